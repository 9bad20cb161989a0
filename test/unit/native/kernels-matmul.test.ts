// Native matmul kernels against plain TypeScript math, on every ISA level this CPU has and on 1 and 2
// threads (shapes large enough to be split). f32/f16: f64 reference, tolerance 1e-5 of the output
// magnitude (f16 weights compared with the same halves widened). Q8_0/Q4_0: ggml blocks packed, the
// reference is x · dequantized(w)ᵀ, each output within the bound of quantizing x to Q8_0
// (quantizedActivationBound). Outputs start as NaN so an element the kernel skips fails.
import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { prescaleHalves } from '../../../gpu-runner/engine/backends/wasm/tensors.ts';
import { HALF_PRESCALED } from '../../../gpu-runner/engine/backends/wasm/runtime.ts';
import { expectNativeWhereExpected, kernels, nativeCases } from '../../helpers/native.ts';
import { TestMemory } from '../../helpers/native-memory.ts';
import {
  dequantizeRows,
  type QType,
  quantizedActivationBound,
  quantizeRows,
} from '../../helpers/quant-ref.ts';
import { matmulRef, rand, relErr } from '../../helpers/wasm-runtime.ts';

// tails in every dimension: M = 1 (decode), M < 4, M = 16 (a decode batch in one pass), M around the
// 12/6-row micro-kernels (int8: every row tail of the 6-row prefill tile), N odd and past 16/32-column strips, K not a multiple of 16 (f32) or of 64
// (int8), K beyond one 512 block
const F_SHAPES: Array<[number, number, number]> = [
  [1, 37, 70],
  [3, 5, 33],
  [13, 83, 96],
  [25, 17, 530],
  [40, 129, 1100],
];
const Q_SHAPES: Array<[number, number, number]> = [
  [1, 37, 96],
  [2, 16, 32],
  [7, 83, 160],
  [16, 70, 192],
  [19, 50, 608],
  [64, 129, 256],
  // the prefill tile (M > 16: 6 rows × 2 groups of 16 columns) with every row tail 1–5, a one-group
  // column tail, and rows past one 96-row block
  [17, 33, 64],
  [32, 21, 96],
  [100, 40, 128],
];

it('native addon loaded where expected', () => {
  expectNativeWhereExpected();
});

describe.each(nativeCases)('native matmul, %s, %i thread(s)', (level, threads) => {
  it.each(F_SHAPES)('f32 weights M=%i N=%i K=%i, with and without bias', (M, N, K) => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const x = rand(M * K, M + K);
    const w = rand(N * K, N * 3 + K);
    const b = rand(N, 5);
    for (const withBias of [false, true]) {
      const y = mem.out(M * N);
      const args = {
        x: mem.putF32(x),
        w: mem.putF32(w),
        bias: withBias ? mem.putF32(b) : 0,
        y,
        M,
        N,
        K,
        f16: false,
      };
      k.matmul(mem.u8, args);
      expect(relErr(mem.getF32(y, M * N), matmulRef(x, w, M, N, K, withBias ? b : undefined))).toBeLessThan(
        1e-5,
      );
    }
  });

  it.each(F_SHAPES)('f16 weights (IEEE and pre-scaled halves) M=%i N=%i K=%i', (M, N, K) => {
    const k = kernels(level, threads);
    const mem = new TestMemory();
    const x = rand(M * K, M * 5 + K);
    // small weights so some halves are subnormal
    const h = f32ToF16(rand(N * K, N + 7 * K, 1e-3));
    const ref = matmulRef(x, f16ToF32(h), M, N, K);
    const pre = prescaleHalves(h);
    if (!pre) throw new Error('test weights must pre-scale');
    for (const [bits, f16Scale] of [
      [h, undefined],
      [pre, HALF_PRESCALED],
    ] as const) {
      const pw = mem.alloc(bits.length * 2);
      mem.u8.set(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength), pw);
      const y = mem.out(M * N);
      const px = mem.putF32(x);
      k.matmul(mem.u8, { x: px, w: pw, bias: 0, y, M, N, K, f16: true, f16Scale });
      expect(relErr(mem.getF32(y, M * N), ref)).toBeLessThan(1e-5);
    }
  });

  for (const type of ['q8_0', 'q4_0'] as QType[]) {
    it.each(Q_SHAPES)(
      `${type} weights M=%i N=%i K=%i within the activation-quantization bound`,
      (M, N, K) => {
        const k = kernels(level, threads);
        const mem = new TestMemory();
        const x = rand(M * K, M * 11 + K);
        // one all-zero activation block and one all-zero weight row block exercise d = 0
        x.fill(0, 0, 32);
        const wf = rand(N * K, N * 17 + K);
        wf.fill(0, K, K + 32);
        const blocks = quantizeRows(type, wf, N, K);
        // Q8_0: a raw −128 quant (ggml never writes it, a file may hold it)
        if (type === 'q8_0') blocks[2] = 0x80;
        const wd = dequantizeRows(type, blocks, N, K);
        const b = rand(N, 9);
        const src = mem.putBytes(blocks);
        const pw = mem.alloc(k.packedBytes(type, N, K));
        k.packWeights(type, mem.u8, src, N, K, mem.u8, pw);
        const y = mem.out(M * N);
        const args = { x: mem.putF32(x), w: pw, bias: mem.putF32(b), y, M, N, K };
        k.matmulQ(mem.u8, type, args);
        const got = mem.getF32(y, M * N);
        const ref = matmulRef(x, wd, M, N, K, b);
        const bound = quantizedActivationBound(x, wd, M, N, K);
        let worst = 0;
        for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / bound[i]);
        expect(worst).toBeLessThanOrEqual(1);
        // and the bound is tight enough to mean something: well under the outputs' own size
        expect(Math.max(...bound)).toBeLessThan(0.05 * Math.max(...ref.map(Math.abs)));
      },
    );
  }
});
