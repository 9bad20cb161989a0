// The native backend's f16 KV cache (kvDType 'f16'): K/V stored as IEEE halves in the wasm memory, so a
// decode step's attention reads half the bytes (the addon widens on load). The addon's kernels write it
// (kvWrite and the artifact unpack narrow as they write) and read it (dense attention); everything else that reads or fills a cache goes
// through these strided f16 ↔ f32 copies (kvConvert): host reads and loads, kvGather, and the wasm
// attention modes
// (sparse prefill, key ranges), which attend over an f32 copy of the layer's written positions.
import type { KernelSpan } from '../kernels.ts';
import type { KVBlock, KVCacheSpec } from '../types.ts';
import type { WasmRuntime } from '../wasm/runtime.ts';
import { allocTensor, WasmKVCache, type WasmTensor } from '../wasm/tensors.ts';
import type { NativeKernels } from './kernels.ts';

/** Positions [start, start + count) of `layer` of an f16 cache → f32 k and v [count][kvHeads·headDim]. */
export function gatherHalf(
  rt: WasmRuntime,
  native: NativeKernels,
  c: WasmKVCache,
  layer: number,
  start: number,
  count: number,
): { k: WasmTensor; v: WasmTensor } {
  const { kvHeads, headDim, capacity } = c.spec;
  const width = kvHeads * headDim;
  const k = allocTensor(rt.mem, count * width * 4);
  const v = allocTensor(rt.mem, count * width * 4);
  const at = c.offset(layer, 0, start);
  for (const [src, dst] of [
    [c.k + at, k.off],
    [c.v + at, v.off],
  ])
    native.kvConvert(rt.mem.u8, {
      src,
      dst,
      heads: kvHeads,
      rows: count,
      width: headDim,
      srcHeadStride: capacity * headDim,
      srcRowStride: headDim,
      dstHeadStride: headDim,
      dstRowStride: width,
      toHalf: false,
    });
  return { k, v };
}

/**
 * f32 rows [kv_head][count][headDim] at byte offset `src` (heads `srcHeadStride` elements apart) →
 * positions [pos, pos + count) of `layer`'s K (or V) of an f16 cache.
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
  const { kvHeads, headDim, capacity } = c.spec;
  native.kvConvert(rt.mem.u8, {
    src,
    dst: (part === 'k' ? c.k : c.v) + c.offset(layer, 0, pos),
    heads: kvHeads,
    rows: count,
    width: headDim,
    srcHeadStride,
    srcRowStride: headDim,
    dstHeadStride: capacity * headDim,
    dstRowStride: headDim,
    toHalf: true,
  });
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
  const { kvHeads, headDim, capacity } = c.spec;
  const n = kvHeads * count * headDim;
  const tmp = rt.mem.alloc(Math.max(1, n) * 4);
  try {
    const read = (base: number) => {
      native.kvConvert(rt.mem.u8, {
        src: base + c.offset(layer, 0, start),
        dst: tmp,
        heads: kvHeads,
        rows: count,
        width: headDim,
        srcHeadStride: capacity * headDim,
        srcRowStride: headDim,
        dstHeadStride: count * headDim,
        dstRowStride: headDim,
        toHalf: false,
      });
      return rt.mem.f32.slice(tmp >> 2, (tmp >> 2) + n);
    };
    return { k: read(c.k), v: read(c.v) };
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
 * Spans over f16 caches → the same spans over one-layer f32 copies of `layer`'s written positions
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
    const { k, v } = gatherPerHead(rt, native, s.cache, layer, nk);
    offs.push(k, v);
    const spec: KVCacheSpec = { layers: 1, kvHeads: s.spec.kvHeads, headDim: s.spec.headDim, capacity: nk };
    return { ...s, spec, cache: new WasmKVCache(spec, k, v) };
  });
  return {
    spans: out,
    free: () => {
      for (const o of offs) rt.mem.release(o);
    },
  };
}

/** positions [0, n) of `layer` → f32 k, v [kv_head][n][headDim] (a cache layer's own layout). */
function gatherPerHead(
  rt: WasmRuntime,
  native: NativeKernels,
  c: WasmKVCache,
  layer: number,
  n: number,
): { k: number; v: number } {
  const { kvHeads, headDim, capacity } = c.spec;
  const bytes = Math.max(1, kvHeads * n * headDim) * 4;
  const k = rt.mem.alloc(bytes);
  const v = rt.mem.alloc(bytes);
  for (const [src, dst] of [
    [c.k, k],
    [c.v, v],
  ])
    native.kvConvert(rt.mem.u8, {
      src: src + c.offset(layer, 0, 0),
      dst,
      heads: kvHeads,
      rows: n,
      width: headDim,
      srcHeadStride: capacity * headDim,
      srcRowStride: headDim,
      dstHeadStride: n * headDim,
      dstRowStride: headDim,
      toHalf: false,
    });
  return { k, v };
}
