// The `webgpu` backend: WGSL kernels on Dawn (the `webgpu` npm package) — Vulkan/Metal/D3D12 on a GPU,
// OpenGL ES on Mesa llvmpipe as the CPU fallback CI runs on.
export { createWebGPUBackend, type WebGPUBackend, WebGPUKernels } from './backend.ts';
export {
  type AdapterReport,
  type DeviceInfo,
  probeAdapter,
  type WebGPUMode,
  WebGPUUnavailableError,
} from './device.ts';
export { DeviceLostError, type WebGPUOptions } from './memory.ts';
