// The checking layer's tensors and caches — its own objects wrapping a backend's kernel handles — and
// the argument checks on them that every op of checked.ts shares. Each failure is a BackendArgumentError
// naming the op and the problem.
import { BackendArgumentError } from '../errors.ts';
import type { DType } from './dtypes.ts';
import type { KernelSpan } from './kernels.ts';
import type { KVCache, KVCacheSpec, SeqSpan, Tensor } from './types.ts';

export class DeviceTensor<T> implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** the CheckedBackend that made it */
  readonly owner: object;
  /** null once freed */
  handle: T | null;
  /** Host copy of an uploaded i32 tensor: gather checks its ids (device-made ids are in range). */
  readonly ints: Int32Array | null;
  constructor(owner: object, shape: readonly number[], dtype: DType, handle: T, ints: Int32Array | null) {
    this.owner = owner;
    this.shape = shape;
    this.dtype = dtype;
    this.handle = handle;
    this.ints = ints;
  }
}

export class DeviceKVCache<C> implements KVCache {
  readonly spec: KVCacheSpec;
  readonly owner: object;
  /** null once freed */
  handle: C | null;
  constructor(owner: object, spec: KVCacheSpec, handle: C) {
    this.owner = owner;
    this.spec = spec;
    this.handle = handle;
  }
}

export const fail = (op: string, problem: string) => new BackendArgumentError(op, problem);

/** The live handle of one of `owner`'s tensors, of one of `dtypes` when given. */
export function liveHandle<T>(
  owner: object,
  t: Tensor,
  op: string,
  what: string,
  dtypes?: DType | readonly DType[],
): T {
  if (!(t instanceof DeviceTensor) || t.owner !== owner)
    throw fail(op, `${what} is a tensor from another backend`);
  if (t.handle === null) throw fail(op, `${what}: tensor used after free()`);
  // a single dtype is compared without an array: this runs for every tensor argument of every op
  if (dtypes !== undefined && (typeof dtypes === 'string' ? t.dtype !== dtypes : !dtypes.includes(t.dtype))) {
    const want = typeof dtypes === 'string' ? dtypes : dtypes.join(' or ');
    throw fail(op, `${what} must be ${want}, got ${t.dtype}`);
  }
  return t.handle as T;
}

/** The live handle and spec of one of `owner`'s KV caches. */
export function liveCache<C>(owner: object, c: KVCache, op: string): { h: C; spec: KVCacheSpec } {
  if (!(c instanceof DeviceKVCache) || c.owner !== owner) throw fail(op, 'KV cache from another backend');
  if (c.handle === null) throw fail(op, 'KV cache used after freeKVCache()');
  return { h: c.handle as C, spec: c.spec };
}

/** [rows, cols] of a 2-D tensor. */
export function matrix(t: Tensor, op: string, what: string): [number, number] {
  if (t.shape.length !== 2) throw fail(op, `${what} must be a 2-D tensor, got [${t.shape}]`);
  return [t.shape[0], t.shape[1]];
}

export function checkLayer(op: string, layer: number, spec: KVCacheSpec): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= spec.layers)
    throw fail(op, `layer ${layer} outside [0, ${spec.layers})`);
}

export function checkPositions(op: string, spec: KVCacheSpec, start: number, count: number): void {
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0)
    throw fail(op, `positions [${start}, +${count}) are not a range`);
  if (start + count > spec.capacity)
    throw fail(op, `KV cache positions [${start}, ${start + count}) outside capacity ${spec.capacity}`);
}

/** One span of a step whose activations have `rows` rows, against its cache at `layer`. */
export function kernelSpan<C>(
  owner: object,
  op: string,
  s: SeqSpan,
  rows: number,
  layer: number,
): KernelSpan<C> {
  const { h, spec } = liveCache<C>(owner, s.cache, op);
  checkLayer(op, layer, spec);
  if (
    !(
      Number.isInteger(s.row) &&
      Number.isInteger(s.count) &&
      s.row >= 0 &&
      s.count >= 0 &&
      s.row + s.count <= rows
    )
  )
    throw fail(op, `span rows [${s.row}, +${s.count}) outside ${rows} rows`);
  if (!(Number.isInteger(s.pos) && s.pos >= 0) || s.pos + s.count > spec.capacity)
    throw fail(op, `positions [${s.pos}, ${s.pos + s.count}) exceed cache capacity ${spec.capacity}`);
  return { cache: h, spec, row: s.row, count: s.count, pos: s.pos };
}
