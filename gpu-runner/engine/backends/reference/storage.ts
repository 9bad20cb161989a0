// Storage of the reference backend: tensors and KV caches as plain typed arrays, and the checked
// accessors the ops use.
import type { DType, KVCache, KVCacheSpec, Tensor } from '../types.ts';
import { f16Table } from '../../half.ts';

export type Storage = Float32Array | Uint16Array | Int32Array;

export class RefTensor implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  data: Storage | null;
  constructor(shape: readonly number[], dtype: DType, data: Storage) {
    this.shape = shape;
    this.dtype = dtype;
    this.data = data;
  }
}

// k, v: [layer][kv_head][pos][head_dim], f32
export class RefKVCache implements KVCache {
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

export function ref(t: Tensor): RefTensor {
  if (!(t instanceof RefTensor)) throw new Error('reference backend: tensor from another backend');
  if (!t.data) throw new Error('reference backend: tensor used after free()');
  return t;
}
export function f32(t: Tensor, what: string): Float32Array {
  const r = ref(t);
  if (r.dtype !== 'f32') throw new Error(`reference backend: ${what} must be f32, got ${r.dtype}`);
  return r.data as Float32Array;
}
export function i32(t: Tensor, what: string): Int32Array {
  const r = ref(t);
  if (r.dtype !== 'i32') throw new Error(`reference backend: ${what} must be i32, got ${r.dtype}`);
  return r.data as Int32Array;
}
export function rows2(t: Tensor): [number, number] {
  if (t.shape.length !== 2) throw new Error(`reference backend: expected a 2-D tensor, got [${t.shape}]`);
  return [t.shape[0], t.shape[1]];
}
export function cache(c: KVCache): RefKVCache {
  if (!(c instanceof RefKVCache)) throw new Error('reference backend: KV cache from another backend');
  return c;
}
/** Row `r` of a [*, D] f32 or f16 weight as f32 numbers, written into `out`. */
export function weightRow(w: RefTensor, r: number, d: number, out: Float32Array): Float32Array {
  if (w.dtype === 'f32') return (w.data as Float32Array).subarray(r * d, r * d + d);
  const bits = w.data as Uint16Array;
  for (let i = 0; i < d; i++) out[i] = f16Table[bits[r * d + i]];
  return out;
}

export function checkRange(c: RefKVCache, start: number, count: number): void {
  if (start < 0 || count < 0 || start + count > c.spec.capacity) {
    throw new Error(`KV cache: positions [${start}, ${start + count}) outside capacity ${c.spec.capacity}`);
  }
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
