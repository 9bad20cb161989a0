// The engine backend a serving command asks for: a CPU choice is passed on as is (the engine creates it
// through the backend registry); webgpu is opened here so a missing adapter is a usage error naming what
// to install.
import { type BackendChoice, createBackend } from '../gpu-runner/engine/backends/registry.ts';
import type { Backend } from '../gpu-runner/engine/backends/types.ts';
import { BackendUnavailableError } from '../gpu-runner/engine/errors.ts';
import type { Config } from '../src/config.ts';
import { UsageError } from './args.ts';

export async function engineBackend(config: Config): Promise<Backend | BackendChoice> {
  if (config.engineBackend !== 'webgpu') return config.engineBackend;
  try {
    return await createBackend('webgpu', {
      webgpu: { mode: config.webgpuAdapter, kvDType: config.webgpuKvDType },
    });
  } catch (err) {
    if (err instanceof BackendUnavailableError)
      throw new UsageError(`KVRAG_ENGINE_BACKEND=${config.engineBackend}: ${err.message}`);
    throw err;
  }
}
