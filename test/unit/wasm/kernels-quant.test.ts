// wasm Q8_0/Q4_0 matmul (int8 dot products on ggml blocks) against plain TypeScript math: x times the
// dequantized weights, each output within the bound of quantizing x to Q8_0 per 32-block
// (quantizedActivationBound), for both kernel variants (relaxed-SIMD i8 dot; i16 multiply-add) on 1 and
// 2 threads with every op split into parts. Outputs start as NaN so a skipped element fails.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { matmulQuantWasm } from '../../../gpu-runner/engine/backends/wasm/quant-ops.ts';
import { relaxedSimdSupported, WasmRuntime } from '../../../gpu-runner/engine/backends/wasm/runtime.ts';
import {
  dequantizeRows,
  type QType,
  quantizedActivationBound,
  quantizeRows,
} from '../../helpers/quant-ref.ts';
import { getF32, matmulRef, putF32, rand } from '../../helpers/wasm-runtime.ts';

// M = 1 (decode), odd M (row-pair tail), N odd and not a multiple of 4 or 16, K not a multiple of 64
const SHAPES: Array<[number, number, number]> = [
  [1, 37, 96],
  [2, 16, 32],
  [3, 83, 160],
  [8, 50, 608],
  [33, 21, 256],
];

const variants = relaxedSimdSupported() ? (['fma', 'simd'] as const) : (['simd'] as const);

describe.each(variants.flatMap((v) => [1, 2].map((t) => [v, t] as const)))(
  'wasm int8 matmul, %s, %i thread(s)',
  (variant, threads) => {
    let rt: WasmRuntime;
    beforeAll(async () => {
      rt = await WasmRuntime.create({ threads, variant, splitAll: true });
    });
    afterAll(async () => {
      await rt.close();
    });

    for (const type of ['q8_0', 'q4_0'] as QType[]) {
      it.each(SHAPES)(`${type} M=%i N=%i K=%i within the activation-quantization bound`, (M, N, K) => {
        const x = rand(M * K, M * 11 + K);
        x.fill(0, 0, 32); // d = 0 block
        const wf = rand(N * K, N * 17 + K);
        wf.fill(0, K, K + 32);
        const blocks = quantizeRows(type, wf, N, K);
        // the i16 path is exact for every int8, −128 included (the relaxed path needs |w| ≤ 127 off x86)
        if (type === 'q8_0' && variant === 'simd') blocks[2] = 0x80;
        const wd = dequantizeRows(type, blocks, N, K);
        const b = rand(N, 9);
        const pw = rt.mem.alloc(blocks.length);
        rt.mem.u8.set(blocks, pw);
        const y = rt.mem.alloc(M * N * 4);
        rt.mem.f32.fill(Number.NaN, y / 4, y / 4 + M * N);
        const px = putF32(rt, x);
        const pb = putF32(rt, b);
        matmulQuantWasm(rt, type, { x: px, w: pw, bias: pb, y, M, N, K });
        const got = getF32(rt, y, M * N);
        const ref = matmulRef(x, wd, M, N, K, b);
        const bound = quantizedActivationBound(x, wd, M, N, K);
        let worst = 0;
        for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / bound[i]);
        expect(worst).toBeLessThanOrEqual(1);
        for (const p of [px, pw, pb, y]) rt.mem.release(p);
      });
    }

    it('refuses K that is not a multiple of 32', () => {
      expect(() => matmulQuantWasm(rt, 'q8_0', { x: 0, w: 0, bias: 0, y: 0, M: 1, N: 1, K: 40 })).toThrow(
        /multiple of 32/,
      );
    });
  },
);
