// Native attention against a straightforward softmax(q·Kᵀ·scale)·V in f64, on every ISA level and on 1
// and 2 threads: GQA (3 query heads per kv head), causal masks whose limits cross the 64-key tiles and the
// units' row chunks, chunked prefill (qpos0 > 0), no mask, q rows with a wider stride, K/V read from a
// cache with spare capacity, and decode shapes whose keys are split into chunks merged by log-sum-exp.
// Tolerance 2e-5 of the output magnitude; lse within 1e-5 absolute.
// The same cases over an f16 KV cache (K/V stored as IEEE halves, widened by the kernel): against the
// reference on the halves' exact f32 values, so the f32 bound holds unchanged (only the storage differs).
// And over an int8 KV cache (codes with an f32 scale per kv head and position; the kernel converts codes and
// applies a key's scale to its scores, a value's to its weight): against the reference on scale · code.
import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { expectNativeWhereExpected, kernels, nativeCases } from '../../helpers/native.ts';
import { TestMemory } from '../../helpers/native-memory.ts';
import { rand, relErr } from '../../helpers/wasm-runtime.ts';

interface Case {
  name: string;
  nq: number;
  H: number;
  Hkv: number;
  d: number;
  nk: number;
  qpos0: number;
  capacity: number;
  qStride?: number;
}

// q: [nq][qStride] with head h at h·d; k, v: [Hkv][capacity][d]
function attentionRef(c: Case, q: Float32Array, k: Float32Array, v: Float32Array, scale: number) {
  const qs = c.qStride ?? c.H * c.d;
  const G = c.H / c.Hkv;
  const out = new Float32Array(c.nq * qs);
  const lse = new Float32Array(c.nq * c.H);
  for (let i = 0; i < c.nq; i++)
    for (let h = 0; h < c.H; h++) {
      const g = Math.floor(h / G);
      const lim = c.qpos0 >= 0 ? Math.min(c.nk, c.qpos0 + i + 1) : c.nk;
      const s: number[] = [];
      for (let j = 0; j < lim; j++) {
        let dot = 0;
        for (let e = 0; e < c.d; e++) dot += q[i * qs + h * c.d + e] * k[(g * c.capacity + j) * c.d + e];
        s.push(dot * scale);
      }
      const m = Math.max(...s);
      const p = s.map((x) => Math.exp(x - m));
      const l = p.reduce((a, b) => a + b, 0);
      for (let e = 0; e < c.d; e++) {
        let acc = 0;
        for (let j = 0; j < lim; j++) acc += p[j] * v[(g * c.capacity + j) * c.d + e];
        out[i * qs + h * c.d + e] = acc / l;
      }
      lse[i * c.H + h] = m + Math.log(l);
    }
  return { out, lse };
}

const CASES: Case[] = [
  {
    name: 'causal prefill across tiles and row chunks',
    nq: 130,
    H: 6,
    Hkv: 2,
    d: 64,
    nk: 130,
    qpos0: 0,
    capacity: 160,
  },
  {
    name: 'chunked prefill crossing the 64-key edge',
    nq: 10,
    H: 6,
    Hkv: 2,
    d: 32,
    nk: 70,
    qpos0: 60,
    capacity: 80,
  },
  {
    name: 'no mask, wider q stride, d = 48',
    nq: 21,
    H: 3,
    Hkv: 1,
    d: 48,
    nk: 77,
    qpos0: -1,
    capacity: 77,
    qStride: 200,
  },
  // 22 queries × 3 heads = 66 rows: a last unit of 2 rows (64- and 32-row units) scores key by key
  { name: 'row-chunk tail of 2 rows, causal', nq: 22, H: 6, Hkv: 2, d: 64, nk: 90, qpos0: 68, capacity: 96 },
  { name: 'decode, keys split and merged', nq: 1, H: 6, Hkv: 2, d: 64, nk: 700, qpos0: 699, capacity: 720 },
  {
    name: 'two decode rows, causal inside the split',
    nq: 2,
    H: 9,
    Hkv: 3,
    d: 64,
    nk: 1030,
    qpos0: 1028,
    capacity: 1030,
  },
];

it('native addon loaded where expected', () => {
  expectNativeWhereExpected();
});

const KV_TYPES = [['f32'], ['f16'], ['int8']] as const;

/** int8 rows [Hkv][capacity][d] with a scale per row: codes, scales and the exact values s · q */
function int8Rows(rows: number, d: number, seed: number) {
  const codes = Int8Array.from(rand(rows * d, seed, 127.49), Math.round);
  const scales = rand(rows, seed + 7, 0.01).map((x) => Math.abs(x) + 0.005);
  const vals = Float32Array.from(codes, (c, i) => Math.fround(scales[Math.floor(i / d)] * c));
  return { codes, scales, vals };
}

describe.each(nativeCases)('native attention, %s, %i thread(s)', (level, threads) => {
  it.each(CASES.flatMap((c) => KV_TYPES.map(([t]) => ({ ...c, kv: t }))))('$name ($kv K/V)', (c) => {
    const kern = kernels(level, threads);
    const mem = new TestMemory();
    const qs = c.qStride ?? c.H * c.d;
    const q = rand(c.nq * qs, c.nq + c.d, 2);
    const half = c.kv === 'f16';
    const q8 = c.kv === 'int8';
    const kq = int8Rows(c.Hkv * c.capacity, c.d, c.nk);
    const vq = int8Rows(c.Hkv * c.capacity, c.d, c.nk + 1);
    // an f16 cache holds the halves; the reference attends their exact values
    const kh = f32ToF16(rand(c.Hkv * c.capacity * c.d, c.nk, 2));
    const vh = f32ToF16(rand(c.Hkv * c.capacity * c.d, c.nk + 1));
    const k = half ? f16ToF32(kh) : q8 ? kq.vals : rand(c.Hkv * c.capacity * c.d, c.nk, 2);
    const v = half ? f16ToF32(vh) : q8 ? vq.vals : rand(c.Hkv * c.capacity * c.d, c.nk + 1);
    const put = (x: Float32Array, h: Uint16Array, i8: Int8Array) =>
      half
        ? mem.putBytes(new Uint8Array(h.buffer, h.byteOffset, h.byteLength))
        : q8
          ? mem.putBytes(new Uint8Array(i8.buffer, i8.byteOffset, i8.byteLength))
          : mem.putF32(x);
    const scale = 1 / Math.sqrt(c.d);
    const out = mem.out(c.nq * qs);
    const lse = mem.out(c.nq * c.H);
    const args = {
      half,
      q: mem.putF32(q),
      k: put(k, kh, kq.codes),
      v: put(v, vh, vq.codes),
      ...(q8
        ? { q8: { ks: mem.putF32(kq.scales), vs: mem.putF32(vq.scales), scaleHeadStride: c.capacity } }
        : {}),
      out,
      lse,
      nq: c.nq,
      heads: c.H,
      kvHeads: c.Hkv,
      headDim: c.d,
      scale,
      qStride: qs,
      kvHeadStride: c.capacity * c.d,
      kvPosStride: c.d,
      qpos0: c.qpos0,
      nk: c.nk,
    };
    // the view is taken after the allocations: growing the memory replaces its buffer object
    kern.attention(mem.u8, args);
    const ref = attentionRef(c, q, k, v, scale);
    const got = mem.getF32(out, c.nq * qs);
    // only the heads' slots of each q row are outputs (a wider stride leaves the rest untouched)
    const pick = (a: Float32Array) =>
      Float32Array.from(
        { length: c.nq * c.H * c.d },
        (_, t) => a[Math.floor(t / (c.H * c.d)) * qs + (t % (c.H * c.d))],
      );
    expect(relErr(pick(got), pick(ref.out))).toBeLessThan(2e-5);
    const gotLse = mem.getF32(lse, c.nq * c.H);
    for (let i = 0; i < gotLse.length; i++)
      expect(Math.abs(gotLse[i] - ref.lse[i])).toBeLessThan(1e-5 * Math.max(1, Math.abs(ref.lse[i])));
  });
});
