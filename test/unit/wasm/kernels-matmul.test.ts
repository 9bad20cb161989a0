// wasm matmul kernel (f32 and f16 weights; panel path M ≥ 4 and matrix-vector path M < 4) against a
// straightforward f64 matmul, threads 1 and 2. Tolerance: 1e-5 of the output magnitude for f32 (sums of
// up to 700 products in a different order); f16 weights compare against the same f16 values widened.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { WasmRuntime } from '../../../gpu-runner/engine/backends/wasm/runtime.ts';
import { getF32, matmulRef, putF32, putU16, rand, relErr } from '../../helpers/wasm-runtime.ts';

// shapes cover: tails in every dimension (M odd, N % 4, K % 4), K beyond one 256 block, N beyond one
// 64-row panel and uneven thread shares, and the decode path (M = 1..3).
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 37, 13],
  [2, 70, 300],
  [3, 9, 64],
  [4, 4, 4],
  [5, 131, 259],
  [17, 66, 530],
  [64, 200, 96],
];

describe.each([1, 2])('wasm matmul, %i thread(s)', (threads) => {
  let rt: WasmRuntime;
  beforeAll(async () => {
    rt = await WasmRuntime.create({ threads, splitAll: true });
  });
  afterAll(async () => {
    await rt.close();
  });

  it.each(SHAPES)('f32 weights M=%i N=%i K=%i (with and without bias)', (M, N, K) => {
    const x = rand(M * K, M * 7 + K);
    const w = rand(N * K, N * 13 + K);
    const b = rand(N, N);
    for (const withBias of [false, true]) {
      const px = putF32(rt, x);
      const pw = putF32(rt, w);
      const pb = withBias ? putF32(rt, b) : 0;
      const py = rt.mem.alloc(M * N * 4);
      rt.mem.f32.fill(Number.NaN, py / 4, py / 4 + M * N); // every output must be written
      rt.matmul({ x: px, w: pw, bias: pb, y: py, M, N, K, f16: false });
      const got = getF32(rt, py, M * N);
      expect(relErr(got, matmulRef(x, w, M, N, K, withBias ? b : undefined))).toBeLessThan(1e-5);
      for (const p of [px, pw, py]) rt.mem.release(p);
      if (pb) rt.mem.release(pb);
    }
  });

  it.each(SHAPES)('f16 weights M=%i N=%i K=%i', (M, N, K) => {
    const x = rand(M * K, M + K * 3);
    const wHalf = f32ToF16(rand(N * K, N * 5 + K));
    const w = f16ToF32(wHalf);
    const px = putF32(rt, x);
    const pw = putU16(rt, wHalf);
    const py = rt.mem.alloc(M * N * 4);
    rt.mem.f32.fill(Number.NaN, py / 4, py / 4 + M * N);
    rt.matmul({ x: px, w: pw, bias: 0, y: py, M, N, K, f16: true });
    expect(relErr(getF32(rt, py, M * N), matmulRef(x, w, M, N, K))).toBeLessThan(1e-5);
    for (const p of [px, pw, py]) rt.mem.release(p);
  });

  it('f16 widening is exact for subnormal, tiny and large halves', () => {
    // every finite half: 1 row of x = e_k picks column k of w exactly
    const bits = new Uint16Array(0x7c00 * 2);
    for (let h = 0; h < 0x7c00; h++) {
      bits[h] = h;
      bits[0x7c00 + h] = h | 0x8000;
    }
    const K = 8;
    const N = bits.length / K;
    const px = putF32(
      rt,
      Float32Array.from({ length: 4 * K }, (_, i) => (i % (K + 1) === 0 ? 1 : 0)),
    );
    const pw = putU16(rt, bits);
    const py = rt.mem.alloc(4 * N * 4);
    rt.matmul({ x: px, w: pw, bias: 0, y: py, M: 4, N, K, f16: true });
    const got = getF32(rt, py, 4 * N);
    const want = f16ToF32(bits);
    for (let r = 0; r < 4; r++)
      for (let j = 0; j < N; j++) {
        if (got[r * N + j] !== want[j * K + r]) throw new Error(`half ${bits[j * K + r]}: ${got[r * N + j]}`);
      }
    for (const p of [px, pw, py]) rt.mem.release(p);
  });
});
