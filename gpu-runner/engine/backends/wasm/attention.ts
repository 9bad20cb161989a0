// Attention kernels of the wasm backend, all one AssemblyScript kernel (kernels/attention.as) in its
// modes: 0 dense causal per span; 2 key ranges per (query head, query block) plus gathered columns, with
// log-sum-exp (sparse prefill: the plan is per kv head, so each query head of a group gets its kv head's
// selection); 3 key ranges per kv head for its whole query group, causal (squeezed attention's step,
// and a sparse plan of one block without columns, with its lse).
// Arguments arrive checked (checked.ts) and plans flattened (plan.ts).
import type { AttentionCall, KernelSpan } from '../kernels.ts';
import type { FlatPlan } from '../plan.ts';
import type { AttentionArgs, WasmRuntime } from './runtime.ts';
import { allocTensor, uploadInts, type WasmKVCache, type WasmTensor } from './tensors.ts';

type Span = KernelSpan<WasmKVCache>;
type Call = AttentionCall<WasmTensor, WasmKVCache>;

/** The kernel's dense causal arguments for one span's rows, all but where the output goes (the native
 * backend's attention takes the same). */
export function spanArgs(q: WasmTensor, width: number, s: Span, layer: number, heads: number, scale: number) {
  return {
    q: q.off + s.row * width * 4,
    ...s.cache.layerArgs(layer),
    nq: s.count,
    heads,
    scale,
    qpos0: s.pos,
    nk: s.pos + s.count,
  };
}

/**
 * q, out: [rows, width]; keys[i] = span i's ranges per kv head (mode 3) or null (dense, mode 0); keys
 * absent = every span dense.
 */
export function attentionWasm(
  rt: WasmRuntime,
  { q, rows, width, layer, spans, heads, scale }: Call,
  keys: readonly (FlatPlan | null)[] | null,
): WasmTensor {
  const bytes = rows * width * 4;
  const y = allocTensor(rt.mem, bytes);
  rt.mem.u8.fill(0, y.off, y.off + bytes); // rows outside every span are zero
  const scratch: WasmTensor[] = [];
  try {
    spans.forEach((s, i) => {
      const args = { ...spanArgs(q, width, s, layer, heads, scale), out: y.off + s.row * width * 4 };
      const plan = keys?.[i];
      if (!plan) {
        rt.attention(args);
        return;
      }
      const idx = uploadInts(rt.mem, plan.ranges);
      const offs = uploadInts(rt.mem, plan.rangeOffs);
      scratch.push(idx, offs);
      const work = Math.max(1, Math.ceil(plan.rangeKeys / plan.kvHeads));
      rt.attention({ ...args, mode: 3, idx: idx.off, offs: offs.off, work });
    });
  } finally {
    for (const t of scratch) rt.mem.release(t.off);
  }
  return y;
}

/** One span over its plan: out [count, width], lse [count, heads] (see Backend.sparseAttention). */
export function sparseAttentionWasm(
  rt: WasmRuntime,
  { q, width, layer, spans, heads, scale }: Call,
  plan: FlatPlan,
): { out: WasmTensor; lse: WasmTensor } {
  const span = spans[0];
  if (plan.blocks === 1 && plan.cols.length === 0)
    return rangesWithLse(rt, span, q, width, layer, heads, scale, plan);
  const group = heads / plan.kvHeads;
  const nqb = plan.blocks;
  // mode 2 indexes (query head, query block): every head of a group repeats its kv head's lists
  const offs = new Int32Array(heads * nqb + 1);
  const coffs = new Int32Array(heads * nqb + 1);
  for (let h = 0; h < heads; h++)
    for (let b = 0; b < nqb; b++) {
      const u = Math.floor(h / group) * nqb + b;
      offs[h * nqb + b + 1] = offs[h * nqb + b] + plan.rangeOffs[u + 1] - plan.rangeOffs[u];
      coffs[h * nqb + b + 1] = coffs[h * nqb + b] + plan.colOffs[u + 1] - plan.colOffs[u];
    }
  const ranges = new Int32Array(offs[heads * nqb] * 2);
  const cols = new Int32Array(coffs[heads * nqb]);
  for (let h = 0; h < heads; h++)
    for (let b = 0; b < nqb; b++) {
      const u = Math.floor(h / group) * nqb + b;
      ranges.set(
        plan.ranges.subarray(plan.rangeOffs[u] * 2, plan.rangeOffs[u + 1] * 2),
        offs[h * nqb + b] * 2,
      );
      cols.set(plan.cols.subarray(plan.colOffs[u], plan.colOffs[u + 1]), coffs[h * nqb + b]);
    }
  const idx = uploadInts(rt.mem, ranges);
  const off = uploadInts(rt.mem, offs);
  const cidx = cols.length > 0 ? uploadInts(rt.mem, cols) : null;
  const coff = cols.length > 0 ? uploadInts(rt.mem, coffs) : null;
  try {
    const out = allocTensor(rt.mem, span.count * width * 4);
    const lse = allocTensor(rt.mem, span.count * heads * 4);
    const extra: Partial<AttentionArgs> = {
      mode: 2,
      idx: idx.off,
      offs: off.off,
      bq: plan.blockSize,
      cols: cidx?.off,
      colOffs: coff?.off,
    };
    rt.attention({ ...spanArgs(q, width, span, layer, heads, scale), out: out.off, lse: lse.off, ...extra });
    return { out, lse };
  } finally {
    for (const t of [idx, off, cidx, coff]) if (t) rt.mem.release(t.off);
  }
}

/**
 * A one-block plan without columns (squeezed attention's exact part when it merges with an approximated
 * one): mode 3, each key read once for its kv head's group, with the lse.
 */
function rangesWithLse(
  rt: WasmRuntime,
  span: Span,
  q: WasmTensor,
  width: number,
  layer: number,
  heads: number,
  scale: number,
  plan: FlatPlan,
): { out: WasmTensor; lse: WasmTensor } {
  const idx = uploadInts(rt.mem, plan.ranges);
  const offs = uploadInts(rt.mem, plan.rangeOffs);
  try {
    const out = allocTensor(rt.mem, span.count * width * 4);
    const lse = allocTensor(rt.mem, span.count * heads * 4);
    const work = Math.max(1, Math.ceil(plan.rangeKeys / plan.kvHeads));
    rt.attention({
      ...spanArgs(q, width, span, layer, heads, scale),
      out: out.off,
      lse: lse.off,
      mode: 3,
      idx: idx.off,
      offs: offs.off,
      work,
    });
    return { out, lse };
  } finally {
    for (const t of [idx, offs]) rt.mem.release(t.off);
  }
}
