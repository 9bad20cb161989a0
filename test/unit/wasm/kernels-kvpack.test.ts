// wasm kv_unpack (chunk KV artifact section → cache rows, keys re-rotated) against the reference decoder
// (kv-codec.ts) plus a straightforward rotation, threads 1 and 2, every artifact dtype, head dims that take
// the SIMD paths (64) and the scalar tails (12, 20), keys stored with and without the Hadamard rotation
// (head dims 8 to 128: every blocking of its butterflies). Tolerances: exact without rotation (the same f32
// products); with rotation 1e-5 relative (f32 sin/cos of AssemblyScript vs f64 rounded to f32).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WasmRuntime } from '../../../gpu-runner/engine/backends/wasm/runtime.ts';
import {
  decodeSectionValues,
  defaultQuant,
  encodeSection,
  isQuantized,
  KV_DTYPES,
  type KVDType,
  sectionLayout,
} from '../../../gpu-runner/engine/kv/kv-codec.ts';
import { getF32, putF32, rand, relErr } from '../../helpers/wasm-runtime.ts';

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

describe.each([1, 2])('wasm kv_unpack, %i thread(s)', (threads) => {
  let rt: WasmRuntime;
  beforeAll(async () => {
    rt = await WasmRuntime.create({ threads, splitAll: true });
  });
  afterAll(async () => {
    await rt.close();
  });

  // the quantized dtypes also with and without the keys' Hadamard rotation at head dims that take it
  const cases: [KVDType, number, 'hadamard' | 'none' | 'default'][] = [
    ...KV_DTYPES.flatMap((dt) => [64, 12, 20].map((d): [KVDType, number, 'default'] => [dt, d, 'default'])),
    ...(['int8', 'int4'] as const).flatMap((dt) =>
      [8, 16, 32, 64, 128].flatMap((d) =>
        (['hadamard', 'none'] as const).map((t): [KVDType, number, typeof t] => [dt, d, t]),
      ),
    ),
  ];
  it.each(cases)(
    '%s, head_dim %i, key transform %s: values exact, keys re-rotated',
    (dtype, d, transform) => {
      const g = { kvHeads: 2, n: 37, headDim: d };
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
      const capacity = 50;
      const start = 5;
      for (const part of ['k', 'v'] as const) {
        // keys with an outlier channel and a drifting one; values of mixed scale
        const x = rand(g.kvHeads * g.n * d, d + (part === 'k' ? 1 : 2), 2).map((v, i) =>
          i % d === 1 ? 30 + v * 10 : i % d === d - 1 ? v + Math.floor(i / d) * 0.05 : v,
        );
        const bytes = encodeSection(dtype, part, g, q, x);
        const want = decodeSectionValues(dtype, part, g, q, bytes);
        const lay = sectionLayout(dtype, part, g, q);
        const src = rt.mem.alloc(bytes.byteLength);
        rt.mem.u8.set(bytes, src);
        const dst = putF32(rt, new Float32Array(g.kvHeads * capacity * d).fill(-7));
        const freq = putF32(rt, inv);
        const delta = part === 'k' ? 1234 : 0;
        rt.kvUnpack({
          src,
          dst: dst + start * d * 4,
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
          invFreq: freq,
          hadamard: part === 'k' && q?.keyTransform === 'hadamard',
        });
        const got = getF32(rt, dst, g.kvHeads * capacity * d);
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
        for (const p of [src, dst, freq]) rt.mem.release(p);
      }
    },
  );
});
