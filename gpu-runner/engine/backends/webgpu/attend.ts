// Attention dispatch of the webgpu backend (kernels/attention.ts): a span's causal attention, split over
// workgroups along the keys when few query rows meet many keys (flash decoding), and attention over an
// explicit plan of key ranges and gathered columns (sparse prefill, squeezed attention's ranges).
import type { SeqSpan } from '../types.ts';
import type { GpuKVCache, GpuTensor } from './buffers.ts';
import * as at from './kernels/attention.ts';
import { gridRows } from './kernels/common.ts';
import type { Binding, Recorder } from './recorder.ts';

type Live = GpuTensor & { buffer: GPUBuffer };
type LiveCache = GpuKVCache & { k: GPUBuffer; v: GPUBuffer };

/** What these functions need of the backend. */
export interface AttendHost {
  rec: Recorder;
  readonly keysPerSplit: number;
  readonly maxSplits: number;
  readonly none: Binding;
  readonly noneW: Binding;
  alloc(shape: readonly number[], dtype: 'f32' | 'i32'): Live;
  uploadIndex(data: Int32Array | Uint32Array): Live;
  free(t: GpuTensor): void;
  bind(t: Live): Binding;
}

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
export function attendSpan(
  b: AttendHost,
  qt: Live,
  y: Live,
  c: LiveCache,
  layer: number,
  s: SeqSpan,
  heads: number,
  scale: number,
): void {
  const { headDim } = c.spec;
  const width = heads * headDim;
  const nk = s.pos + s.count;
  const want = Math.min(b.maxSplits, Math.ceil(nk / b.keysPerSplit));
  // split only when the grid would otherwise be too small to fill a GPU
  const splits = s.count * heads >= 256 ? 1 : Math.max(1, want);
  const chunk = splits === 1 ? nk : Math.ceil(nk / splits / 64) * 64;
  const used = Math.ceil(nk / chunk);
  const base = [...partialLead(c, layer, s.count, heads, scale, s.row * width, s.pos), chunk];
  if (used === 1) {
    b.rec.dispatch(
      at.attentionPartial(0, c.dtype),
      [...base, 1, s.row * width, 0, 1, 1, 0],
      [b.bind(qt), { buffer: c.k }, { buffer: c.v }, b.none, b.none, b.bind(y), b.noneW],
      [1, heads, s.count],
    );
    return;
  }
  const po = b.alloc([s.count * heads * used, headDim], 'f32');
  const pl = b.alloc([s.count * heads * used], 'f32');
  b.rec.dispatch(
    at.attentionPartial(0, c.dtype),
    [...base, used, 0, 1, 1, 1, 0],
    [b.bind(qt), { buffer: c.k }, { buffer: c.v }, b.none, b.none, b.bind(po), b.bind(pl)],
    [used, heads, s.count],
  );
  b.rec.dispatch(
    at.attentionCombine,
    [s.count, heads, headDim, used, s.row * width],
    [b.bind(po), b.bind(pl), b.bind(y)],
    gridRows(s.count * heads),
  );
  b.free(po);
  b.free(pl);
}
/**
 * One span's attention over explicit key sets (kernel mode 3): ranges[g][b] and columns[g][b] per kv
 * head g and query block b of `blockSize` rows, causally masked. Writes out rows at outRow (of y) and,
 * when given, lse rows at 0.
 */
export function attendPlan(
  b: AttendHost,
  qt: Live,
  c: LiveCache,
  layer: number,
  s: SeqSpan,
  heads: number,
  scale: number,
  ranges: readonly (readonly Int32Array[])[],
  columns: readonly (readonly Int32Array[])[] | null,
  blockSize: number,
  limit: number,
  what: string,
  y: Live,
  outRow: number,
  lse: Live | null,
): void {
  const { kvHeads, headDim } = c.spec;
  const nqb = Math.ceil(s.count / blockSize);
  if (ranges.length !== kvHeads || ranges.some((r) => r.length !== nqb))
    throw new Error(`${what}: plan must be [${kvHeads} kv heads][${nqb} query blocks]`);
  const nsel = kvHeads * nqb;
  const offs = new Uint32Array(2 * nsel + 2);
  const pairs: number[] = [];
  const cols: number[] = [];
  for (let g = 0; g < kvHeads; g++)
    for (let b = 0; b < nqb; b++) {
      const rs = ranges[g][b];
      for (let i = 0; i + 1 < rs.length; i += 2) {
        if (rs[i] < 0 || rs[i + 1] > limit || rs[i] > rs[i + 1])
          throw new Error(`${what}: bad range [${rs[i]}, ${rs[i + 1]})`);
        pairs.push(rs[i], rs[i + 1]);
      }
      offs[g * nqb + b + 1] = pairs.length / 2;
      for (const j of columns?.[g]?.[b] ?? []) {
        if (j < 0 || j >= limit) throw new Error(`${what}: column ${j} outside the span`);
        cols.push(j);
      }
      offs[nsel + 1 + g * nqb + b + 1] = cols.length;
    }
  for (let i = nsel + 1; i < offs.length; i++) offs[i] += pairs.length;
  const idx = b.uploadIndex(Uint32Array.from(pairs.length + cols.length ? [...pairs, ...cols] : [0]));
  const off = b.uploadIndex(offs);
  const width = heads * headDim;
  b.rec.dispatch(
    at.attentionPartial(3, c.dtype),
    [
      ...partialLead(c, layer, s.count, heads, scale, s.row * width, s.pos),
      0,
      1,
      outRow * width,
      lse ? 1 : 0,
      nqb,
      blockSize,
      0,
    ],
    [
      b.bind(qt),
      { buffer: c.k },
      { buffer: c.v },
      b.bind(idx),
      b.bind(off),
      b.bind(y),
      lse ? b.bind(lse) : b.noneW,
    ],
    [1, heads, s.count],
  );
  b.free(idx);
  b.free(off);
}
