// Attention of the webgpu backend (kernels/attention.ts): a span's causal attention, split over
// workgroups along the keys when few query rows meet many keys (flash decoding), and attention over a
// flat plan of key ranges and gathered columns per kv head and query block (sparse prefill; squeezed
// attention's ranges are a one-block plan). Arguments arrive checked (../checked.ts).
import type { AttentionCall, KernelSpan } from '../kernels.ts';
import type { FlatPlan } from '../plan.ts';
import type { GpuKVCache, GpuTensor } from './buffers.ts';
import * as at from './kernels/attention.ts';
import { gridRows } from './kernels/common.ts';
import type { Live, LiveCache, WebGPUDevice } from './memory.ts';

type Span = KernelSpan<GpuKVCache>;
type Call = AttentionCall<GpuTensor, GpuKVCache>;

/**
 * The leading attention_partial parameters: query rows and heads, the cache layer's geometry (kv heads,
 * head dim, scale, floats per kv head, the layer's base), the first query float and the first query's
 * position. PARTIAL_PARAMS (kernels/attention.ts) lists them all.
 */
export function partialLead(
  c: LiveCache,
  layer: number,
  rows: number,
  heads: number,
  scale: number,
  qFloat: number,
  qPos: number,
): number[] {
  const { kvHeads, headDim, capacity } = c.spec;
  return [rows, heads, kvHeads, headDim, scale, capacity * headDim, c.offset(layer, 0, 0), qFloat, qPos];
}

/** One span's causal attention: split-KV (flash decoding) when few rows meet many keys. */
function attendSpan(
  d: WebGPUDevice,
  qt: Live,
  y: Live,
  c: LiveCache,
  layer: number,
  s: Span,
  heads: number,
  scale: number,
): void {
  const { headDim } = c.spec;
  const width = heads * headDim;
  const nk = s.pos + s.count;
  const want = Math.min(d.maxSplits, Math.ceil(nk / d.keysPerSplit));
  // split only when the grid would otherwise be too small to fill a GPU
  const splits = s.count * heads >= 256 ? 1 : Math.max(1, want);
  const chunk = splits === 1 ? nk : Math.ceil(nk / splits / 64) * 64;
  const used = Math.ceil(nk / chunk);
  const base = [...partialLead(c, layer, s.count, heads, scale, s.row * width, s.pos), chunk];
  if (used === 1) {
    d.rec.dispatch(
      at.attentionPartial(0, c.dtype),
      [...base, 1, s.row * width, 0, 1, 1, 0],
      [d.bind(qt), { buffer: c.k }, { buffer: c.v }, d.none, d.none, d.bind(y), d.noneW],
      [1, heads, s.count],
    );
    return;
  }
  const po = d.alloc([s.count * heads * used, headDim], 'f32');
  const pl = d.alloc([s.count * heads * used], 'f32');
  d.rec.dispatch(
    at.attentionPartial(0, c.dtype),
    [...base, used, 0, 1, 1, 1, 0],
    [d.bind(qt), { buffer: c.k }, { buffer: c.v }, d.none, d.none, d.bind(po), d.bind(pl)],
    [used, heads, s.count],
  );
  d.rec.dispatch(
    at.attentionCombine,
    [s.count, heads, headDim, used, s.row * width],
    [d.bind(po), d.bind(pl), d.bind(y)],
    gridRows(s.count * heads),
  );
  d.free(po);
  d.free(pl);
}

/**
 * One span's attention over a flat plan (kernel mode 3), causally masked. Writes out rows at outRow
 * (of y) and, when given, lse rows at 0.
 */
function attendPlan(
  d: WebGPUDevice,
  qt: Live,
  c: LiveCache,
  layer: number,
  s: Span,
  heads: number,
  scale: number,
  plan: FlatPlan,
  y: Live,
  outRow: number,
  lse: Live | null,
): void {
  const units = plan.kvHeads * plan.blocks;
  const pairs = plan.ranges.length;
  // offs: pair offsets per unit [units + 1], then column offsets into idx (after the pairs) [units + 1]
  const offs = new Uint32Array(2 * units + 2);
  for (let u = 0; u <= units; u++) {
    offs[u] = plan.rangeOffs[u];
    offs[units + 1 + u] = pairs + plan.colOffs[u];
  }
  const idx = new Uint32Array(Math.max(1, pairs + plan.cols.length));
  idx.set(plan.ranges);
  idx.set(plan.cols, pairs);
  const idxT = d.uploadIndex(idx);
  const offT = d.uploadIndex(offs);
  const width = heads * c.spec.headDim;
  d.rec.dispatch(
    at.attentionPartial(3, c.dtype),
    [
      ...partialLead(c, layer, s.count, heads, scale, s.row * width, s.pos),
      0,
      1,
      outRow * width,
      lse ? 1 : 0,
      plan.blocks,
      plan.blockSize,
      0,
    ],
    [
      d.bind(qt),
      { buffer: c.k },
      { buffer: c.v },
      d.bind(idxT),
      d.bind(offT),
      d.bind(y),
      lse ? d.bind(lse) : d.noneW,
    ],
    [1, heads, s.count],
  );
  d.free(idxT);
  d.free(offT);
}

/** q [rows, width] → [rows, width]; keys[i]: span i's one-block plan, or null (dense); absent = all dense. */
export function attention(
  d: WebGPUDevice,
  { q, rows, width, layer, spans, heads, scale }: Call,
  keys: readonly (FlatPlan | null)[] | null,
): GpuTensor {
  const qt = d.live(q);
  const y = d.alloc([rows, width], 'f32');
  const covered = spans.reduce((n, s) => n + s.count, 0);
  if (covered < rows) d.rec.copyEncoder().clearBuffer(y.buffer, 0, rows * width * 4); // rows outside spans: 0
  spans.forEach((s, i) => {
    const c = d.liveCache(s.cache);
    const plan = keys?.[i];
    if (plan) attendPlan(d, qt, c, layer, s, heads, scale, plan, y, s.row, null);
    else attendSpan(d, qt, y, c, layer, s, heads, scale);
  });
  return y;
}

/** One span over its plan: out [count, width], lse [count, heads]. */
export function sparseAttention(
  d: WebGPUDevice,
  { q, width, layer, spans, heads, scale }: Call,
  plan: FlatPlan,
): { out: GpuTensor; lse: GpuTensor } {
  const span = spans[0];
  const out = d.alloc([span.count, width], 'f32');
  const lse = d.alloc([span.count, heads], 'f32');
  try {
    attendPlan(d, d.live(q), d.liveCache(span.cache), layer, span, heads, scale, plan, out, 0, lse);
  } catch (err) {
    d.free(out);
    d.free(lse);
    throw err;
  }
  return { out, lse };
}
