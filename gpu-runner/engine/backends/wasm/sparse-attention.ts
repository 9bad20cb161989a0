// Backend.sparseAttention on the wasm runtime (sparse prefill, DESIGN.md §4.3): the attention kernel's
// mode 2 (key ranges per (query head, query block), causal) with gathered columns. The plan is per kv
// head; every query head of a kv head's group gets its selection.
import type { SeqSpan, SparsePlan, Tensor } from '../types.ts';
import type { AttentionArgs, WasmRuntime } from './runtime.ts';
import { allocTensor, asTensor, rows2, spanAttentionArgs, type WasmTensor } from './tensors.ts';

function uploadInts(rt: WasmRuntime, data: Int32Array): WasmTensor {
  const t = allocTensor(rt.mem, [Math.max(1, data.length)], 'i32');
  rt.mem.i32.set(data, t.off >> 2);
  return t;
}

/** One span's q and cache, checked: q is [rows, heads·headDim] and the span fits the cache. */
function spanInputs(q: Tensor, span: SeqSpan, layer: number, heads: number, scale: number, op: string) {
  const [, width] = rows2(q, op);
  return { width, ...spanAttentionArgs(asTensor(q, `${op} q`, 'f32'), width, span, layer, heads, scale, op) };
}

/**
 * The attention kernel over one span's rows, writing the output [span.count, width] and its
 * log-sum-exp [span.count, heads]; `extra`: the mode and its index arguments (none: dense causal).
 */
function attendSpanWithLse(
  rt: WasmRuntime,
  inputs: ReturnType<typeof spanInputs>,
  span: SeqSpan,
  heads: number,
  extra: Partial<AttentionArgs> = {},
): { out: WasmTensor; lse: WasmTensor } {
  const out = allocTensor(rt.mem, [span.count, inputs.width], 'f32');
  const lse = allocTensor(rt.mem, [span.count, heads], 'f32');
  rt.attention({ ...inputs.args, out: out.off, lse: lse.off, ...extra });
  return { out, lse };
}

/** out: [span.count, heads·headDim], lse: [span.count, heads] (see Backend.sparseAttention). */
export function sparseAttentionWasm(
  rt: WasmRuntime,
  q: Tensor,
  layer: number,
  span: SeqSpan,
  plan: SparsePlan,
  heads: number,
  scale: number,
): { out: WasmTensor; lse: WasmTensor } {
  const inputs = spanInputs(q, span, layer, heads, scale, 'sparseAttention');
  const limit = inputs.args.nk;
  const { kvHeads } = inputs.c.spec;
  const bq = plan.blockSize;
  const nQB = Math.ceil(span.count / bq);
  if (plan.ranges.length !== kvHeads || plan.ranges.some((g) => g.length !== nQB))
    throw new Error(`sparseAttention: plan must be [${kvHeads} kv heads][${nQB} query blocks]`);
  const group = heads / kvHeads;
  const offs = new Int32Array(heads * nQB + 1);
  const coffs = new Int32Array(heads * nQB + 1);
  for (let h = 0; h < heads; h++)
    for (let b = 0; b < nQB; b++) {
      const g = Math.floor(h / group);
      const u = h * nQB + b;
      offs[u + 1] = offs[u] + (plan.ranges[g][b].length >> 1);
      coffs[u + 1] = coffs[u] + (plan.columns[g]?.[b]?.length ?? 0);
    }
  const ranges = new Int32Array(offs[heads * nQB] * 2);
  const cols = new Int32Array(coffs[heads * nQB]);
  for (let g = 0; g < kvHeads; g++)
    for (let b = 0; b < nQB; b++) {
      const rs = plan.ranges[g][b];
      for (let i = 0; i + 1 < rs.length; i += 2)
        if (rs[i] < 0 || rs[i + 1] > limit || rs[i] > rs[i + 1])
          throw new Error(`sparseAttention: bad range [${rs[i]}, ${rs[i + 1]})`);
      const cs = plan.columns[g]?.[b] ?? new Int32Array(0);
      for (const p of cs) if (p < 0 || p >= limit) throw new Error(`sparseAttention: column ${p} outside`);
      for (let h = g * group; h < (g + 1) * group; h++) {
        ranges.set(rs, offs[h * nQB + b] * 2);
        cols.set(cs, coffs[h * nQB + b]);
      }
    }
  const idx = uploadInts(rt, ranges);
  const off = uploadInts(rt, offs);
  const hasCols = cols.length > 0;
  const cidx = hasCols ? uploadInts(rt, cols) : undefined;
  const coff = hasCols ? uploadInts(rt, coffs) : undefined;
  try {
    return attendSpanWithLse(rt, inputs, span, heads, {
      mode: 2,
      idx: idx.off,
      offs: off.off,
      bq,
      cols: cidx?.off,
      colOffs: coff?.off,
    });
  } finally {
    for (const t of [idx, off, cidx, coff]) if (t) rt.mem.release(t.off);
  }
}

/**
 * Dense causal attention of one span (the kernel attention() runs, mode 0) that also writes its
 * log-sum-exp: the oracle sparse prefill is measured against. out: [span.count, heads·headDim],
 * lse: [span.count, heads].
 */
export function denseAttentionWithLseWasm(
  rt: WasmRuntime,
  q: Tensor,
  layer: number,
  span: SeqSpan,
  heads: number,
  scale: number,
): { out: WasmTensor; lse: WasmTensor } {
  return attendSpanWithLse(
    rt,
    spanInputs(q, span, layer, heads, scale, 'denseAttentionWithLse'),
    span,
    heads,
  );
}
