// Picks the CPU backend: `wasm` (SIMD kernels + threads) wherever WebAssembly SIMD and shared memory
// are available, else `reference`. 'auto' is what embedded mode, CPU runners and tests should use.
import { createReferenceBackend } from './reference/index.ts';
import type { Backend } from './types.ts';
import { createWasmBackend, wasmBackendAvailable } from './wasm/index.ts';

export type CpuBackendKind = 'auto' | 'reference' | 'wasm';

export interface CpuBackendOptions {
  /** wasm threads including the calling thread; default: available cores. */
  threads?: number;
}

/** The kind 'auto' resolves to on this host. */
export function defaultCpuBackendKind(): 'reference' | 'wasm' {
  return wasmBackendAvailable() ? 'wasm' : 'reference';
}

export async function createCpuBackend(
  kind: CpuBackendKind = 'auto',
  opts: CpuBackendOptions = {},
): Promise<Backend> {
  const resolved = kind === 'auto' ? defaultCpuBackendKind() : kind;
  if (resolved === 'reference') return createReferenceBackend();
  return createWasmBackend({ threads: opts.threads });
}
