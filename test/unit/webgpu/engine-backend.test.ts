// KVRAG_ENGINE_BACKEND=webgpu: serve and runner open the webgpu backend on the configured adapter; a CPU
// kind passes through untouched; no adapter is a usage error naming what to install.
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../../gpu-runner/engine/backends/types.ts';
import type { WebGPUBackend } from '../../../gpu-runner/engine/backends/webgpu/index.ts';
import { UsageError } from '../../../cli/args.ts';
import { engineBackend } from '../../../cli/engine-backend.ts';
import { loadConfig } from '../../../src/config.ts';
import { webgpuMode } from '../../helpers/webgpu.ts';

describe('engine backend from configuration', () => {
  it('webgpu opens a device on the configured adapter; CPU kinds pass through', async () => {
    const b = (await engineBackend(
      loadConfig({ KVRAG_ENGINE_BACKEND: 'webgpu', KVRAG_WEBGPU_ADAPTER: webgpuMode }),
    )) as Backend;
    expect(b.name).toBe('webgpu');
    b.dispose();
    const h = (await engineBackend(
      loadConfig({
        KVRAG_ENGINE_BACKEND: 'webgpu',
        KVRAG_WEBGPU_ADAPTER: webgpuMode,
        KVRAG_WEBGPU_KV_DTYPE: 'f16',
      }),
    )) as WebGPUBackend;
    const c = h.createKVCache({ layers: 1, kvHeads: 1, headDim: 2, capacity: 1 });
    expect(h.cacheOf(c).dtype).toBe('f16');
    expect(h.caps.kvDType).toBe('f16');
    h.dispose();
    expect(await engineBackend(loadConfig({ KVRAG_ENGINE_BACKEND: 'wasm' }))).toBe('wasm');
    expect(() => loadConfig({ KVRAG_WEBGPU_ADAPTER: 'metal' })).toThrow(/KVRAG_WEBGPU_ADAPTER/);
  });

  it('a native adapter that does not exist is a usage error', async () => {
    const r = await engineBackend(
      loadConfig({ KVRAG_ENGINE_BACKEND: 'webgpu', KVRAG_WEBGPU_ADAPTER: 'native' }),
    ).then(
      (b) => b as Backend,
      (e: unknown) => e as Error,
    );
    if (r instanceof Error) {
      expect(r).toBeInstanceOf(UsageError);
      expect(r.message).toMatch(/KVRAG_ENGINE_BACKEND=webgpu: no WebGPU adapter/);
    } else {
      expect(r.name).toBe('webgpu'); // a machine with a GPU
      r.dispose();
    }
  });
});
