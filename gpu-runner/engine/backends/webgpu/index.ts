// The `webgpu` backend: WGSL kernels on Dawn (the `webgpu` npm package) — Vulkan/Metal/D3D12 on a GPU,
// OpenGL ES on Mesa llvmpipe as the CPU fallback CI runs on.
export { DeviceLostError, WebGPUBackend, type WebGPUOptions } from './backend.ts';
export {
  type AdapterReport,
  type DeviceInfo,
  probeAdapter,
  type WebGPUMode,
  WebGPUUnavailableError,
} from './device.ts';
export { WebGPUAttentionOps } from './attention-ops.ts';

import { WebGPUBackend, type WebGPUOptions } from './backend.ts';

/** Opens an adapter and device; throws WebGPUUnavailableError (with what to install) when none exists. */
export function createWebGPUBackend(opts: WebGPUOptions = {}): Promise<WebGPUBackend> {
  return WebGPUBackend.create(opts);
}

/** Whether an adapter can be opened in `mode` (opens and closes a device). */
export async function webgpuAvailable(opts: WebGPUOptions = {}): Promise<boolean> {
  try {
    (await WebGPUBackend.create(opts)).dispose();
    return true;
  } catch {
    return false;
  }
}
