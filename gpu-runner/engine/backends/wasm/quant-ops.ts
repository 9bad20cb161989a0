// Q8_0 / Q4_0 weight matmul on the wasm runtime (kernels/quant.as): the activations are quantized to
// Q8_0 blocks into scratch taken from the runtime's memory for the call, then multiplied with integer
// dot products against the weights in ggml's own block layout (no repacking). WasmKernels.matmul calls
// it for q8_0 / q4_0 weights.
import type { BlockDType } from '../dtypes.ts';
import type { WasmRuntime } from './runtime.ts';

/** The block dtypes of backends/dtypes.ts (block sizes and bytes there). */
export type WasmQuantType = BlockDType;
const QTYPE: Record<WasmQuantType, number> = { q8_0: 2, q4_0: 3 };

export interface QuantMatmulArgs {
  /** f32 [M][K] */
  x: number;
  /** ggml blocks, rows [N][K/32] */
  w: number;
  /** f32 [N]; 0 = none */
  bias: number;
  /** f32 [M][N] */
  y: number;
  M: number;
  N: number;
  K: number;
}

/** y = x · wᵀ (+ bias) with w in `type` blocks; K must be a multiple of 32. */
export function matmulQuantWasm(rt: WasmRuntime, type: WasmQuantType, a: QuantMatmulArgs): void {
  if (a.K % 32 !== 0) throw new Error(`wasm ${type} matmul: K = ${a.K} is not a multiple of 32`);
  const nb = a.K / 32;
  // xd, xc: f32 [M][K/32]; xq: int8 [M][K]
  const xd = rt.mem.alloc(a.M * nb * 8 + a.M * a.K);
  const xc = xd + a.M * nb * 4;
  const xq = xc + a.M * nb * 4;
  try {
    rt.pool.run('quantize_q8', [a.x, xq, xd, xc, a.M, a.K], [], rt.parts(a.M * a.K * 8, a.M));
    const args = [xq, xd, xc, a.w, a.bias, a.y, a.M, a.N, a.K, QTYPE[type]];
    // columns split in multiples of 4; decode (M < 4) streams the weights once: parts of ~256 KiB
    const units = Math.ceil(a.N / 16);
    rt.pool.run(
      'matmul_q',
      args,
      [],
      rt.parts(a.M * a.N * a.K, a.M < 4 ? units : Math.min(units, 64), 1 << 18),
    );
  } finally {
    rt.mem.release(xd);
  }
}
