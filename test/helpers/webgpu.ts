// The webgpu backend for tests: the adapter named by KVRAG_WEBGPU_ADAPTER (auto | native | opengl;
// default auto: a real GPU when there is one, else Dawn's OpenGL ES backend on Mesa llvmpipe). No adapter
// is a test failure with the install hint, never a skip: CI installs Mesa (.ci/run).
import { createWebGPUBackend, type WebGPUMode } from '../../gpu-runner/engine/backends/webgpu/index.ts';

export const webgpuMode = (process.env.KVRAG_WEBGPU_ADAPTER ?? 'auto') as WebGPUMode;

export function makeWebGPU(
  opts: { maxSplits?: number; keysPerSplit?: number; kvDType?: 'f32' | 'f16' } = {},
) {
  return createWebGPUBackend({ mode: webgpuMode, ...opts });
}
