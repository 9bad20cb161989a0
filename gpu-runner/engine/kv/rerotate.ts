// RoPE re-rotation of cached keys on the device (DESIGN.md §4.1): keys stored post-RoPE at position p
// move to p + Δ by rotating each rotate-half pair by Δ·θ_i — the Backend rope op given Δ as the position,
// or, for packed artifacts, kvUnpack's rotation fused into the decode. Values do not depend on position.
import type { Backend, KVBlock, KVCache, PackedKV, Tensor } from '../backends/types.ts';

export interface RotatedCopy {
  src: KVCache;
  /** First source position and how many. */
  srcStart: number;
  count: number;
  dst: KVCache;
  /** First destination position; Δ = dstPos − srcPos unless `delta` says otherwise. */
  dstPos: number;
  /** RoPE position delta (defaults to the slot move dstPos − srcStart). */
  delta?: number;
}

/**
 * Copies K/V of every layer from src to dst (device → device), keys re-rotated by Δ.
 * invFreq: [headDim/2] f32, the model's (already rope-scaled) inverse frequencies.
 */
export function copyRotated(b: Backend, invFreq: Parameters<Backend['rope']>[2], c: RotatedCopy): void {
  const { layers, headDim } = c.src.spec;
  const delta = c.delta ?? c.dstPos - c.srcStart;
  const span = [{ cache: c.dst, row: 0, count: c.count, pos: c.dstPos }];
  const deltaT =
    delta === 0
      ? null
      : b.upload({ dtype: 'i32', shape: [c.count], data: new Int32Array(c.count).fill(delta) });
  try {
    for (let l = 0; l < layers; l++) {
      // k, v: [count, kvHeads·headDim]
      const { k, v } = b.kvGather(c.src, l, c.srcStart, c.count);
      const k2 = deltaT ? b.rope(k, deltaT, invFreq, headDim) : k;
      b.kvWrite(l, k2, v, span);
      if (k2 !== k) b.free(k2);
      b.free(k);
      b.free(v);
    }
  } finally {
    if (deltaT) b.free(deltaT);
  }
}

/**
 * Decodes a packed artifact (positions 0..n−1) into dst at positions [pos, pos + n) of every layer, keys
 * re-rotated by Δ = pos: one kvUnpack per layer (widening or dequantization and rotation in one pass).
 */
export function unpackRotated(b: Backend, invFreq: Tensor, src: PackedKV, dst: KVCache, pos: number): void {
  for (let l = 0; l < src.spec.layers; l++) unpackLayer(b, invFreq, src, dst, pos, l);
}

/** unpackRotated for one layer (layer-wise loading places each layer as it arrives). */
export function unpackLayer(
  b: Backend,
  invFreq: Tensor,
  src: PackedKV,
  dst: KVCache,
  pos: number,
  layer: number,
): void {
  b.kvUnpack(dst, layer, pos, src, pos, invFreq);
}

/** A packed artifact's K/V of every layer on the host at its own positions: [kv_head][n][head_dim] f32. */
export async function readPacked(b: Backend, invFreq: Tensor, src: PackedKV): Promise<KVBlock[]> {
  const { layers, kvHeads, headDim, n } = src.spec;
  const tmp = b.createKVCache({ layers, kvHeads, headDim, capacity: n });
  try {
    const out: KVBlock[] = [];
    for (let l = 0; l < layers; l++) {
      b.kvUnpack(tmp, l, 0, src, 0, invFreq);
      out.push(await b.kvRead(tmp, l, 0, n));
    }
    return out;
  } finally {
    b.freeKVCache(tmp);
  }
}
