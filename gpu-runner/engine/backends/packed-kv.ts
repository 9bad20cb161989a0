// Packed chunk KV artifacts in the checking layer (types.ts PackedKV): the device object, the argument
// checks of uploadPackedKV/kvUnpack, and the host path for backends without the kernels — decode with the
// reference decoder (kv/kv-codec.ts), kvLoad, and re-rotate keys with the backend's own kvGather, rope and
// kvWrite, which is what a loaded artifact went through before kvUnpack existed.
import { decodeSectionValues, isQuantized, KV_DTYPES, quantProblem, sectionLayout } from '../kv/kv-codec.ts';
import { checkLayer, checkPositions, fail } from './handles.ts';
import type { Kernels } from './kernels.ts';
import type { KVCacheSpec, PackedKV, PackedKVSpec } from './types.ts';

export class DevicePackedKV<T> implements PackedKV {
  readonly spec: PackedKVSpec;
  readonly bytes: number;
  readonly owner: object;
  /** the sections on the device (kernel path) with each one's offset, or on the host (host path) */
  readonly offsets: { k: readonly number[]; v: readonly number[] };
  handle: T | null;
  host: Uint8Array | null;
  constructor(
    owner: object,
    spec: PackedKVSpec,
    bytes: number,
    offsets: { k: readonly number[]; v: readonly number[] },
    handle: T | null,
    host: Uint8Array | null,
  ) {
    this.owner = owner;
    this.spec = spec;
    this.bytes = bytes;
    this.offsets = offsets;
    this.handle = handle;
    this.host = host;
  }
  get freed(): boolean {
    return this.handle === null && this.host === null;
  }
}

/** Validates the spec and that each section (offsets into a span of `span` bytes) lies inside it. */
function checkPackedLayout(
  op: string,
  spec: PackedKVSpec,
  span: number,
  offsets: { k: readonly number[]; v: readonly number[] },
): { from: number; to: number } {
  const { layers, kvHeads, headDim, n, dtype, quant } = spec;
  if (![layers, kvHeads, headDim, n].every((x) => Number.isInteger(x) && x >= 1))
    throw fail(op, `layers ${layers}, kv heads ${kvHeads}, head dim ${headDim}, n ${n}`);
  if (!(KV_DTYPES as readonly string[]).includes(dtype)) throw fail(op, `unknown dtype ${dtype}`);
  if (isQuantized(dtype)) {
    const why = quant ? quantProblem(dtype, spec, quant) : `a ${dtype} artifact needs group sizes`;
    if (why) throw fail(op, why);
  } else if (quant) throw fail(op, `group sizes on a ${dtype} artifact`);
  if (offsets.k.length !== layers || offsets.v.length !== layers)
    throw fail(op, `${offsets.k.length}/${offsets.v.length} section offsets for ${layers} layers`);
  let from = span;
  let to = 0;
  for (const part of ['k', 'v'] as const) {
    const size = sectionLayout(dtype, part, spec, quant).bytes;
    for (const o of offsets[part]) {
      if (!Number.isInteger(o) || o < 0 || o + size > span)
        throw fail(op, `a ${part} section at ${o} (+${size}) outside ${span} bytes`);
      from = Math.min(from, o);
      to = Math.max(to, o + size);
    }
  }
  return { from, to };
}

/** Validates an upload; returns the span [from, to) of `bytes` that holds every section. */
export function checkPackedUpload(
  spec: PackedKVSpec,
  bytes: Uint8Array,
  offsets: { k: readonly number[]; v: readonly number[] },
): { from: number; to: number } {
  return checkPackedLayout('uploadPackedKV', spec, bytes.byteLength, offsets);
}

const copySpec = (spec: PackedKVSpec): PackedKVSpec => ({
  ...spec,
  quant: spec.quant ? { ...spec.quant } : null,
});

/**
 * reservePackedKV: device memory of `bytes` bytes for an artifact's sections (offsets relative to it),
 * and where the host writes them: a view of the device memory itself (kernel path: a CPU backend's
 * device memory is host memory) or the host copy the host path decodes from. Either way nothing is copied
 * after the caller has written the bytes.
 */
export function reservePacked<T>(
  owner: object,
  kernels: Kernels<T, unknown>,
  kernelPath: boolean,
  spec: PackedKVSpec,
  offsets: { k: readonly number[]; v: readonly number[] },
  bytes: number,
): { packed: DevicePackedKV<T>; target: Uint8Array } {
  if (!Number.isInteger(bytes) || bytes < 1) throw fail('reservePackedKV', `${bytes} bytes`);
  checkPackedLayout('reservePackedKV', spec, bytes, offsets);
  const rel = { k: [...offsets.k], v: [...offsets.v] };
  if (kernelPath) {
    const { handle, view } = kernels.reserveBytes!(bytes);
    return { packed: new DevicePackedKV(owner, copySpec(spec), bytes, rel, handle, null), target: view };
  }
  const host = new Uint8Array(bytes);
  return { packed: new DevicePackedKV<T>(owner, copySpec(spec), bytes, rel, null, host), target: host };
}

/** uploadPackedKV: checks, then the span holding the sections to the device (kernel path) or a host copy. */
export function uploadPacked<T>(
  owner: object,
  kernels: Kernels<T, unknown>,
  kernelPath: boolean,
  spec: PackedKVSpec,
  bytes: Uint8Array,
  offsets: { k: readonly number[]; v: readonly number[] },
): DevicePackedKV<T> {
  const { from, to } = checkPackedUpload(spec, bytes, offsets);
  // only the span holding the sections travels; offsets become relative to it
  const rel = { k: offsets.k.map((o) => o - from), v: offsets.v.map((o) => o - from) };
  const { packed, target } = reservePacked(owner, kernels, kernelPath, spec, rel, to - from);
  target.set(bytes.subarray(from, to));
  return packed;
}

/** One of `owner`'s packed artifacts, not freed. */
export function livePacked<T>(owner: object, p: PackedKV, op: string): DevicePackedKV<T> {
  if (!(p instanceof DevicePackedKV) || p.owner !== owner) throw fail(op, 'packed KV from another backend');
  if (p.freed) throw fail(op, 'packed KV used after freePackedKV()');
  return p as DevicePackedKV<T>;
}

/** kvUnpack's checks: the packed artifact fits the cache's geometry and positions; delta and invFreq. */
export function checkUnpack(
  spec: KVCacheSpec,
  layer: number,
  pos: number,
  src: PackedKVSpec,
  delta: number,
  invFreqShape: readonly number[],
): void {
  const op = 'kvUnpack';
  checkLayer(op, layer, spec);
  if (src.layers !== spec.layers || src.kvHeads !== spec.kvHeads || src.headDim !== spec.headDim)
    throw fail(
      op,
      `artifact ${src.layers}×${src.kvHeads}×${src.headDim} into a ${spec.layers}×${spec.kvHeads}×${spec.headDim} cache`,
    );
  checkPositions(op, spec, pos, src.n);
  if (!Number.isInteger(delta)) throw fail(op, `delta ${delta} is not a whole number of positions`);
  if (invFreqShape.length !== 1 || invFreqShape[0] !== spec.headDim / 2)
    throw fail(op, `invFreq [${invFreqShape}] for head dim ${spec.headDim}`);
}

/** kvUnpack (arguments checked): the backend's kernel per section, or the host path. */
export function unpack<T, C>(
  kernels: Kernels<T, C>,
  c: C,
  spec: KVCacheSpec,
  layer: number,
  pos: number,
  p: DevicePackedKV<T>,
  delta: number,
  invFreq: T,
): void {
  if (p.handle === null) {
    unpackOnHost(kernels, c, spec, layer, pos, p, delta, invFreq);
    return;
  }
  for (const part of ['k', 'v'] as const) {
    const at = p.offsets[part][layer];
    kernels.kvUnpack!(c, spec, layer, pos, part, p.handle, at, p.spec, delta, part === 'k' ? invFreq : null);
  }
}

/** The host path: reference decode, kvLoad, and (keys moved) kvGather → rope by delta → kvWrite. */
function unpackOnHost<T, C>(
  kernels: Kernels<T, C>,
  c: C,
  spec: KVCacheSpec,
  layer: number,
  pos: number,
  p: DevicePackedKV<T>,
  delta: number,
  invFreq: T,
): void {
  const s = p.spec;
  const host = p.host!;
  const section = (part: 'k' | 'v') => {
    const at = p.offsets[part][layer];
    const size = sectionLayout(s.dtype, part, s, s.quant).bytes;
    return decodeSectionValues(s.dtype, part, s, s.quant, host.subarray(at, at + size));
  };
  kernels.kvLoad(c, spec, layer, pos, s.n, { k: section('k'), v: section('v') });
  if (delta === 0) return;
  const deltas = kernels.upload({ dtype: 'i32', shape: [s.n], data: new Int32Array(s.n).fill(delta) });
  const { k, v } = kernels.kvGather(c, spec, layer, pos, s.n);
  const width = spec.kvHeads * spec.headDim;
  const k2 = kernels.rope(k, deltas, invFreq, s.n, width, spec.headDim);
  kernels.kvWrite(layer, k2, v, [{ cache: c, spec, row: 0, count: s.n, pos }]);
  for (const t of [deltas, k, v, k2]) kernels.free(t);
}
