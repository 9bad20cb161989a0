// The native backend's narrow KV caches: kvDType 'f16' (K/V as IEEE halves) and 'int8' (K/V as int8 codes,
// one f32 scale per (layer, kv head, position) row: symmetric per-row quantization, as ggml's Q8_0 over a
// whole 64-value row), kept in the wasm memory so a decode step's attention reads half (f16) or about a
// quarter (int8) of f32's bytes. The addon's kernels write them (kvWrite and the artifact unpack narrow
// or quantize as they write) and read them (dense attention); everything else that reads or fills a cache
// goes through these strided conversions (kvConvert / kvConvertQ8): host reads and loads, kvGather, and the
// wasm attention modes (sparse prefill, key ranges), which attend over an f32 copy of the layer's written
// positions.
import type { KernelSpan } from '../kernels.ts';
import type { KVBlock, KVCacheSpec } from '../types.ts';
import type { WasmRuntime } from '../wasm/runtime.ts';
import { allocTensor, WasmKVCache, type WasmTensor } from '../wasm/tensors.ts';
import type { NativeKernels } from './kernels.ts';

/**
 * Positions [start, start + count) of `layer`'s K (or V) of an f16 / int8 cache ↔ f32 rows at byte offset
 * `f` (kv head h, position i at f + (h · fHeadStride + i · fRowStride) · 4): toCache narrows or quantizes
 * into the cache, else the cache's rows are widened or dequantized into f.
 */
function convertRows(
  rt: WasmRuntime,
  native: NativeKernels,
  c: WasmKVCache,
  part: 'k' | 'v',
  layer: number,
  start: number,
  count: number,
  f: number,
  fHeadStride: number,
  fRowStride: number,
  toCache: boolean,
): void {
  const { kvHeads, headDim, capacity } = c.spec;
  const at = (part === 'k' ? c.k : c.v) + c.offset(layer, 0, start);
  if (c.scales) {
    native.kvConvertQ8(rt.mem.u8, {
      codes: at,
      scales: (part === 'k' ? c.scales.k : c.scales.v) + c.scaleOffset(layer, 0, start),
      f,
      heads: kvHeads,
      rows: count,
      width: headDim,
      codeHeadStride: capacity * headDim,
      codeRowStride: headDim,
      scaleHeadStride: capacity,
      fHeadStride,
      fRowStride,
      toQ8: toCache,
    });
    return;
  }
  const cacheSide = { at, headStride: capacity * headDim, rowStride: headDim };
  const fSide = { at: f, headStride: fHeadStride, rowStride: fRowStride };
  const [src, dst] = toCache ? [fSide, cacheSide] : [cacheSide, fSide];
  native.kvConvert(rt.mem.u8, {
    src: src.at,
    dst: dst.at,
    heads: kvHeads,
    rows: count,
    width: headDim,
    srcHeadStride: src.headStride,
    srcRowStride: src.rowStride,
    dstHeadStride: dst.headStride,
    dstRowStride: dst.rowStride,
    toHalf: toCache,
  });
}

/** Positions [start, start + count) of `layer` of an f16 / int8 cache → f32 k and v [count][kvHeads·headDim]. */
export function gatherHalf(
  rt: WasmRuntime,
  native: NativeKernels,
  c: WasmKVCache,
  layer: number,
  start: number,
  count: number,
): { k: WasmTensor; v: WasmTensor } {
  const { kvHeads, headDim } = c.spec;
  const width = kvHeads * headDim;
  const k = allocTensor(rt.mem, count * width * 4);
  const v = allocTensor(rt.mem, count * width * 4);
  convertRows(rt, native, c, 'k', layer, start, count, k.off, headDim, width, false);
  convertRows(rt, native, c, 'v', layer, start, count, v.off, headDim, width, false);
  return { k, v };
}

/**
 * f32 rows [kv_head][count][headDim] at byte offset `src` (heads `srcHeadStride` elements apart) →
 * positions [pos, pos + count) of `layer`'s K (or V) of an f16 / int8 cache.
 */
export function narrowInto(
  rt: WasmRuntime,
  native: NativeKernels,
  c: WasmKVCache,
  layer: number,
  pos: number,
  part: 'k' | 'v',
  src: number,
  count: number,
  srcHeadStride: number,
): void {
  convertRows(rt, native, c, part, layer, pos, count, src, srcHeadStride, c.spec.headDim, true);
}

/** Host copy of positions [start, start + count) of `layer` (KVBlock layout [kv_head][count][headDim]). */
export function readHalf(
  rt: WasmRuntime,
  native: NativeKernels,
  c: WasmKVCache,
  layer: number,
  start: number,
  count: number,
): KVBlock {
  const { kvHeads, headDim } = c.spec;
  const n = kvHeads * count * headDim;
  const tmp = rt.mem.alloc(Math.max(1, n) * 4);
  try {
    const read = (part: 'k' | 'v') => {
      convertRows(rt, native, c, part, layer, start, count, tmp, count * headDim, headDim, false);
      return rt.mem.f32.slice(tmp >> 2, (tmp >> 2) + n);
    };
    return { k: read('k'), v: read('v') };
  } finally {
    rt.mem.release(tmp);
  }
}

/** A host block ([kv_head][count][headDim] f32) → positions [start, start + count) of `layer`. */
export function loadHalf(
  rt: WasmRuntime,
  native: NativeKernels,
  c: WasmKVCache,
  layer: number,
  start: number,
  count: number,
  block: KVBlock,
): void {
  const { kvHeads, headDim } = c.spec;
  const n = kvHeads * count * headDim;
  const tmp = rt.mem.alloc(Math.max(1, n) * 4);
  try {
    for (const part of ['k', 'v'] as const) {
      rt.mem.f32.set(block[part].subarray(0, n), tmp >> 2);
      narrowInto(rt, native, c, layer, start, part, tmp, count, count * headDim);
    }
  } finally {
    rt.mem.release(tmp);
  }
}

/**
 * Spans over f16 / int8 caches → the same spans over one-layer f32 copies of `layer`'s written positions
 * [0, pos + count) (the wasm attention modes then attend them as layer 0); free() releases the copies.
 */
export function widenSpans(
  rt: WasmRuntime,
  native: NativeKernels,
  spans: readonly KernelSpan<WasmKVCache>[],
  layer: number,
): { spans: KernelSpan<WasmKVCache>[]; free: () => void } {
  const offs: number[] = [];
  const out = spans.map((s) => {
    const nk = s.pos + s.count;
    const { kvHeads, headDim } = s.spec;
    const bytes = Math.max(1, kvHeads * nk * headDim) * 4;
    const k = rt.mem.alloc(bytes);
    const v = rt.mem.alloc(bytes);
    offs.push(k, v);
    // positions [0, nk) → [kv_head][nk][headDim] (a cache layer's own layout)
    convertRows(rt, native, s.cache, 'k', layer, 0, nk, k, nk * headDim, headDim, false);
    convertRows(rt, native, s.cache, 'v', layer, 0, nk, v, nk * headDim, headDim, false);
    const spec: KVCacheSpec = { layers: 1, kvHeads, headDim, capacity: nk };
    return { ...s, spec, cache: new WasmKVCache(spec, k, v) };
  });
  return {
    spans: out,
    free: () => {
      for (const o of offs) rt.mem.release(o);
    },
  };
}
