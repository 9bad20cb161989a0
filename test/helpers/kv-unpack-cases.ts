// The cases every kv_unpack kernel (wasm/kernels/kvpack.as, native/src/kvunpack.cc) is held to, against the
// reference decoder (kv-codec.ts) plus a straightforward rotation: every artifact dtype, head dims that take
// the SIMD paths (64) and the scalar tails (12, 20), keys stored with and without the Hadamard rotation
// (head dims 8 to 128: every blocking of its butterflies), and a section long enough to be split over
// threads. Tolerances: exact without rotation (the same f32 products); with rotation 1e-5 relative (f32
// sin/cos of the kernel vs f64 rounded to f32).
import { expect } from 'vitest';
import type {
  Backend,
  KVBlock,
  KVCache,
  KVCacheSpec,
  SeqSpan,
  SparsePlan,
} from '../../gpu-runner/engine/backends/types.ts';
import type { KVUnpackArgs } from '../../gpu-runner/engine/backends/wasm/runtime.ts';
import {
  decodeSectionValues,
  defaultQuant,
  encodeSection,
  isQuantized,
  KV_DTYPES,
  type KVDType,
  sectionLayout,
} from '../../gpu-runner/engine/kv/kv-codec.ts';
import { rand, relErr } from './wasm-runtime.ts';

type Transform = 'hadamard' | 'none' | 'default';

/** Rotate-half by Δ of every row [kvHeads·n][d], angle f32(Δ·invFreq[i]). */
function rotated(x: Float32Array, d: number, delta: number, inv: Float32Array): Float32Array {
  const out = Float32Array.from(x);
  const half = d / 2;
  for (let r = 0; r < x.length / d; r++)
    for (let i = 0; i < half; i++) {
      const a = Math.fround(delta * inv[i]);
      const [c, s] = [Math.fround(Math.cos(a)), Math.fround(Math.sin(a))];
      const [u, v] = [x[r * d + i], x[r * d + half + i]];
      out[r * d + i] = u * c - v * s;
      out[r * d + half + i] = v * c + u * s;
    }
  return out;
}

/** [dtype, head_dim, key transform, tokens]; the quantized dtypes also with and without the Hadamard. */
export const KV_UNPACK_CASES: [KVDType, number, Transform, number][] = [
  ...KV_DTYPES.flatMap((dt) =>
    [64, 12, 20].map((d): [KVDType, number, Transform, number] => [dt, d, 'default', 37]),
  ),
  ...(['int8', 'int4'] as const).flatMap((dt) =>
    [8, 16, 32, 64, 128].flatMap((d) =>
      (['hadamard', 'none'] as const).map((t): [KVDType, number, Transform, number] => [dt, d, t, 37]),
    ),
  ),
  // 2 × 301 rows of 64: enough to be split over the threads
  ...KV_DTYPES.map((dt): [KVDType, number, Transform, number] => [dt, 64, 'default', 301]),
];

/**
 * What a kernel is given: the section's bytes, the cache (kv heads `capacity` positions apart, filled
 * with −7), invFreq, and the arguments other than the byte offsets of those three (src, dst, invFreq;
 * dst is `dstOffset` bytes into the cache). It returns the cache after the kernel ran.
 */
export type RunUnpack = (
  bytes: Uint8Array,
  cache: Float32Array,
  inv: Float32Array,
  args: Omit<KVUnpackArgs, 'src' | 'dst' | 'invFreq'> & { dstOffset: number },
) => Float32Array;

/** One case: keys (re-rotated by Δ = 1234) and values, each checked against the reference. */
export function checkUnpackCase(
  dtype: KVDType,
  d: number,
  transform: Transform,
  n: number,
  run: RunUnpack,
): void {
  const g = { kvHeads: 2, n, headDim: d };
  // head_dim 12 with value groups of 6: steps that are not a whole number of SIMD lanes
  const base = isQuantized(dtype) ? defaultQuant(dtype, d) : null;
  const q = base
    ? {
        keyGroup: 16,
        valueGroup: d === 12 ? 6 : base.valueGroup,
        ...(transform === 'hadamard' || (transform === 'default' && base.keyTransform)
          ? { keyTransform: 'hadamard' as const }
          : {}),
      }
    : null;
  const inv = Float32Array.from({ length: d / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / d));
  const capacity = n + 13;
  const start = 5;
  for (const part of ['k', 'v'] as const) {
    // keys with an outlier channel and a drifting one; values of mixed scale
    const x = rand(g.kvHeads * g.n * d, d + (part === 'k' ? 1 : 2), 2).map((v, i) =>
      i % d === 1 ? 30 + v * 10 : i % d === d - 1 ? v + Math.floor(i / d) * 0.05 : v,
    );
    const bytes = encodeSection(dtype, part, g, q, x);
    const want = decodeSectionValues(dtype, part, g, q, bytes);
    const lay = sectionLayout(dtype, part, g, q);
    const delta = part === 'k' ? 1234 : 0;
    const got = run(bytes, new Float32Array(g.kvHeads * capacity * d).fill(-7), inv, {
      dstOffset: start * d * 4,
      dtype,
      part,
      ...g,
      keyGroup: q?.keyGroup ?? 1,
      valueGroup: q?.valueGroup ?? 1,
      rowBytes: lay.row,
      steps: lay.steps,
      mins: lay.mins,
      headStride: capacity * d,
      delta,
      hadamard: part === 'k' && q?.keyTransform === 'hadamard',
    });
    for (let h = 0; h < g.kvHeads; h++) {
      const rows = got.subarray((h * capacity + start) * d, (h * capacity + start + g.n) * d);
      const ref = want.subarray(h * g.n * d, (h + 1) * g.n * d);
      if (delta === 0) expect(rows).toEqual(ref);
      else expect(relErr(rows, rotated(ref, d, delta, inv))).toBeLessThan(1e-5);
      // nothing outside [start, start + n) of the head was written
      const before = got.subarray(h * capacity * d, (h * capacity + start) * d);
      const after = got.subarray((h * capacity + start + g.n) * d, (h + 1) * capacity * d);
      expect([...before, ...after].every((v) => v === -7)).toBe(true);
    }
  }
}

/**
 * A K and a V section of `dtype` (2 kv heads × n positions of random values, keys in groups of 8 when
 * quantized) and how a backend places them: unpacked by RoPE delta Δ into a fresh one-layer cache of
 * `spec`'s geometry at position 9, read back as f32 ([kv_head][n][headDim]). The cache-type tests compare
 * one backend's placement against an f32 cache's.
 */
export function artifactPlacement(
  dtype: KVDType,
  spec: KVCacheSpec,
  n = 21,
): (b: Backend, delta: number) => Promise<KVBlock> {
  const d = spec.headDim;
  const geom = { layers: 1, kvHeads: 2, headDim: d, n };
  const quant = isQuantized(dtype) ? { ...defaultQuant(dtype, d), keyGroup: 8 } : null;
  const k = encodeSection(dtype, 'k', geom, quant, rand(2 * n * d, 5, 3));
  const v = encodeSection(dtype, 'v', geom, quant, rand(2 * n * d, 6, 3));
  const bytes = new Uint8Array(k.length + v.length);
  bytes.set(k);
  bytes.set(v, k.length);
  return async (b, delta) => {
    const p = b.uploadPackedKV({ ...geom, dtype, quant }, bytes, { k: [0], v: [k.length] });
    const inv = b.upload({
      dtype: 'f32',
      shape: [16],
      data: Float32Array.from({ length: 16 }, (_, i) => 1 / 10000 ** (i / 16)),
    });
    const c = b.createKVCache({ ...spec, layers: 1 });
    b.kvUnpack(c, 0, 9, p, delta, inv);
    const out = await b.kvRead(c, 0, 9, n);
    b.freeKVCache(c);
    b.freePackedKV(p);
    b.free(inv);
    return out;
  };
}

/**
 * The attention-mode workload the cache-type tests run on each backend. Loads `blocks` (one sequence each,
 * [kv_head][n][headDim] as KVBlock, n ≥ 70 for the first and ≥ 61 for the second) into fresh caches of
 * `spec` at layer 1, position 0, and runs with scale 1/√headDim over queries q ([rows][H·headDim], rows ≥ 21):
 * dense attention over a prefill span (q rows 0..19 of sequence 0 at position 50) and a decode span (row 20,
 * sequence 1 at 60) in one call; sparse prefill of the prefill span with a plan of 8-row blocks (per kv head
 * and block: ranges [0, 16) and one that moves with the block, plus two single columns); key-range attention
 * over both spans (ranges on the first, the second attended in full). Returns the caches (not freed: the
 * caller may run more on them) and the outputs read back.
 */
export async function attentionModes(
  b: Backend,
  spec: KVCacheSpec,
  blocks: readonly KVBlock[],
  q: Float32Array,
  H: number,
): Promise<{
  caches: KVCache[];
  dense: Float32Array; // [rows][H·headDim]
  sparse: Float32Array; // [20][H·headDim]
  lse: Float32Array; // [20][H]
  ranges: Float32Array; // [rows][H·headDim]
}> {
  const hd = H * spec.headDim;
  const scale = 1 / Math.sqrt(spec.headDim);
  const caches = blocks.map((block) => {
    const c = b.createKVCache(spec);
    b.kvLoad(c, 1, 0, block);
    return c;
  });
  const qt = b.upload({ dtype: 'f32', shape: [q.length / hd, hd], data: q });
  const spans: SeqSpan[] = [
    { cache: caches[0], row: 0, count: 20, pos: 50 },
    { cache: caches[1], row: 20, count: 1, pos: 60 },
  ];
  const dense = await b.read(b.attention(qt, 1, spans, H, scale));
  const q20 = b.upload({ dtype: 'f32', shape: [20, hd], data: q.subarray(0, 20 * hd) });
  const plan: SparsePlan = {
    blockSize: 8,
    ranges: [0, 1].map(() => [0, 1, 2].map((bi) => Int32Array.of(0, 16, 40 + bi * 8, 52 + bi * 6))),
    columns: [0, 1].map((g) => [0, 1, 2].map(() => Int32Array.of(20 + g, 33))),
  };
  const sp = b.sparseAttention(q20, 1, spans[0], plan, H, scale);
  const ranges = await b.read(
    b.attentionRanges(qt, 1, spans, [[Int32Array.of(3, 30, 45, 70), Int32Array.of(0, 64)], null], H, scale),
  );
  return { caches, dense, sparse: await b.read(sp.out), lse: await b.read(sp.lse), ranges };
}
