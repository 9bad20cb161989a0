// The `wasm` CPU backend: WebAssembly SIMD kernels (kernels/*.as, built from source by build.ts) run by
// a worker_threads pool over one shared memory.
export { createWasmBackend, type WasmBackend, WasmKernels } from './backend.ts';
export type { RuntimeOptions } from './runtime.ts';
export { relaxedSimdSupported, simdSupported, WasmRuntime, wasmBackendAvailable } from './runtime.ts';
export { matmulQuantWasm, type QuantMatmulArgs, type WasmQuantType } from './quant-ops.ts';
