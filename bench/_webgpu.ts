// The webgpu backend in the benchmarks: opened when an adapter exists (KVRAG_WEBGPU_ADAPTER picks it,
// default auto), labelled with the device, and flagged when the device is a CPU rasteriser (Mesa
// llvmpipe): those numbers check the path runs, they are not GPU numbers.
import type { WebGPUBackend, WebGPUOptions } from '../gpu-runner/engine/backends/webgpu/index.ts';
import { createWebGPUBackend, type WebGPUMode } from '../gpu-runner/engine/backends/webgpu/index.ts';

export interface WebGPULabel {
  device: string;
  featureLevel: string;
  software: boolean;
  /** the adapter lists an f16 → f32 subgroup-matrix configuration */
  subgroupMatrix: boolean;
  /** whether the backend uses it: 'on', or 'off (why)' / 'unavailable' */
  subgroupMatrixState: string;
}

/** A webgpu backend, or null (with the reason) when no adapter can be opened. */
export async function openBenchWebGPU(
  opts: Omit<WebGPUOptions, 'mode'> = {},
): Promise<{ backend: WebGPUBackend | null; note: string }> {
  const mode = (process.env.KVRAG_WEBGPU_ADAPTER ?? 'auto') as WebGPUMode;
  try {
    const backend = await createWebGPUBackend({ ...opts, mode });
    return { backend, note: describe(label(backend)) };
  } catch (err) {
    return { backend: null, note: `webgpu: not measured (${(err as Error).message.split('. ')[0]})` };
  }
}

export function label(b: WebGPUBackend): WebGPULabel {
  return {
    device: b.kernels.info.description,
    featureLevel: b.kernels.info.featureLevel,
    software: b.kernels.info.software,
    subgroupMatrix: b.kernels.info.subgroupMatrix !== null,
    subgroupMatrixState: b.kernels.subgroupMatrix,
  };
}

export function describe(l: WebGPULabel): string {
  return `webgpu device: ${l.device} (featureLevel ${l.featureLevel}${l.subgroupMatrix ? `, subgroup matrices ${l.subgroupMatrixState}` : ''})${
    l.software ? ' — a CPU rasteriser: these webgpu numbers are not GPU numbers' : ''
  }`;
}

/**
 * GFLOP/s of y = x · wᵀ on the device: `calls` matmuls recorded and submitted together, timed to the
 * completion of the last (best of `rounds`), after one warm-up call that compiles the pipeline.
 */
export async function webgpuMatmulGflops(
  b: WebGPUBackend,
  M: number,
  K: number,
  N: number,
  x: Float32Array,
  w: Float32Array,
  w16: Uint16Array | null,
  rounds = 2,
  calls = 3,
): Promise<number> {
  const xt = b.upload({ dtype: 'f32', shape: [M, K], data: x });
  const wt = w16
    ? b.upload({ dtype: 'f16', shape: [N, K], data: w16 })
    : b.upload({ dtype: 'f32', shape: [N, K], data: w });
  b.free(b.matmul(xt, wt));
  await b.sync();
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    for (let i = 0; i < calls; i++) b.free(b.matmul(xt, wt));
    await b.sync();
    best = Math.min(best, (performance.now() - t) / 1000 / calls);
  }
  b.free(xt);
  b.free(wt);
  return (2 * M * K * N) / best / 1e9;
}
