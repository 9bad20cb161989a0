// Storage of the reference backend: a tensor is a plain typed array (its handle), a KV cache two
// Float32Arrays; and the row helpers the kernels share.
import { f16Table } from '../../half.ts';
import { dequantizeInto } from '../../quant/codecs.ts';
import { BLOCK_QUANT, DTYPES, type DType, isBlockDType } from '../dtypes.ts';
import type { KVCacheSpec } from '../types.ts';

export type Storage = Float32Array | Uint16Array | Int32Array | Uint8Array;

// k, v: [layer][kv_head][pos][head_dim], f32
export class RefKVCache {
  readonly spec: KVCacheSpec;
  k: Float32Array;
  v: Float32Array;
  constructor(spec: KVCacheSpec) {
    this.spec = spec;
    const n = spec.layers * spec.kvHeads * spec.capacity * spec.headDim;
    this.k = new Float32Array(n);
    this.v = new Float32Array(n);
  }
  offset(layer: number, head: number, pos: number): number {
    const { kvHeads, capacity, headDim } = this.spec;
    return ((layer * kvHeads + head) * capacity + pos) * headDim;
  }
}

/** Row `r` of a [*, D] f32, f16 or block-quantized weight as f32 numbers, written into `out`. */
export function weightRow(w: Storage, dtype: DType, r: number, d: number, out: Float32Array): Float32Array {
  if (dtype === 'f32') return (w as Float32Array).subarray(r * d, r * d + d);
  if (isBlockDType(dtype)) {
    // a row is d / block blocks of `entries` bytes (dtypes.ts)
    const rowBytes = (d / DTYPES[dtype].block) * DTYPES[dtype].entries;
    dequantizeInto(BLOCK_QUANT[dtype], (w as Uint8Array).subarray(r * rowBytes, (r + 1) * rowBytes), out);
    return out;
  }
  const bits = w as Uint16Array;
  for (let i = 0; i < d; i++) out[i] = f16Table[bits[r * d + i]];
  return out;
}

export function softmaxRow(x: Float32Array, xo: number, n: number, out: Float32Array, oo: number): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < n; j++) if (x[xo + j] > max) max = x[xo + j];
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp(x[xo + j] - max);
    out[oo + j] = e;
    sum += e;
  }
  for (let j = 0; j < n; j++) out[oo + j] /= sum;
}
