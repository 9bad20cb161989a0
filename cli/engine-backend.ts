// The engine backend a serving command asks for: a CPU kind is passed on as is (the engine creates it);
// webgpu is opened here so a missing adapter is a usage error naming what to install.
import type { CpuBackendKind } from '../gpu-runner/engine/backends/cpu-backend.ts';
import type { Backend } from '../gpu-runner/engine/backends/types.ts';
import type { Config } from '../src/config.ts';
import { UsageError } from './args.ts';

export async function engineBackend(config: Config): Promise<Backend | CpuBackendKind> {
  if (config.engineBackend !== 'webgpu') return config.engineBackend;
  const { createWebGPUBackend, WebGPUUnavailableError } = await import(
    '../gpu-runner/engine/backends/webgpu/index.ts'
  );
  try {
    return await createWebGPUBackend({ mode: config.webgpuAdapter, kvDType: config.webgpuKvDType });
  } catch (err) {
    if (err instanceof WebGPUUnavailableError)
      throw new UsageError(`KVRAG_ENGINE_BACKEND=webgpu: ${err.message}`);
    throw err;
  }
}
