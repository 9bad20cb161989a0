// The backend registry (gpu-runner/engine/backends/registry.ts): one list of backends with unique names;
// 'auto' resolves to the available backend of highest priority above 0 (native where the addon loads,
// never webgpu, priority 0);
// creating by name passes its options (wasm threads, webgpu adapter) and gives a checked backend whose
// capabilities match; an unknown name is refused with the names there are; the engine and the serving
// configuration go through it.
import { describe, expect, it } from 'vitest';
import {
  BACKEND_CHOICES,
  BACKENDS,
  createBackend,
  resolveBackendName,
} from '../../gpu-runner/engine/backends/registry.ts';
import {
  type NativeBackend,
  nativeBackendAvailable,
} from '../../gpu-runner/engine/backends/native/backend.ts';
import { nativeNotExpected } from '../../gpu-runner/engine/backends/native/index.ts';
import type { WasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { wasmBackendAvailable } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { loadEngine } from '../../gpu-runner/engine/engine.ts';
import { engineBackend } from '../../cli/engine-backend.ts';
import { loadConfig } from '../../src/config.ts';
import { tinyModels } from '../helpers/tiny-model.ts';
import { webgpuMode } from '../helpers/webgpu.ts';

describe('backend registry', () => {
  it('lists each backend once; the configuration accepts exactly its choices', () => {
    const names = BACKENDS.map((b) => b.name);
    expect(new Set(names).size).toBe(names.length);
    expect(BACKEND_CHOICES).toEqual(['auto', ...names]);
    for (const c of BACKEND_CHOICES) expect(loadConfig({ KVRAG_ENGINE_BACKEND: c }).engineBackend).toBe(c);
    expect(() => loadConfig({ KVRAG_ENGINE_BACKEND: 'cuda' })).toThrow(/KVRAG_ENGINE_BACKEND/);
  });

  it("'auto' is the available backend of highest priority above 0", async () => {
    const ranked = [];
    for (const b of BACKENDS) if (b.priority > 0 && (await b.available())) ranked.push(b);
    ranked.sort((a, b) => b.priority - a.priority);
    const auto = await resolveBackendName('auto');
    expect(auto).toBe(ranked[0].name);
    // native where the addon loads (it must where the machine can build it), else wasm, else reference
    const native = await nativeBackendAvailable();
    if (nativeNotExpected() === null) expect(native).toBe(true);
    expect(auto).toBe(native ? 'native' : wasmBackendAvailable() ? 'wasm' : 'reference');
    expect(BACKENDS.find((b) => b.name === 'webgpu')?.priority).toBe(0);
    expect(await resolveBackendName('reference')).toBe('reference');
  });

  it('creates by name with its options, checked, with capabilities as data', async () => {
    const ref = await createBackend('reference');
    expect(ref.name).toBe('reference');
    expect(ref.caps.readNow).toBe(true);
    ref.dispose();
    const wasm = (await createBackend('wasm', { threads: 1 })) as WasmBackend;
    expect(wasm.name).toBe('wasm');
    expect(wasm.kernels.threads).toBe(1);
    wasm.dispose();
    if (await nativeBackendAvailable()) {
      const native = (await createBackend('native', { threads: 2 })) as NativeBackend;
      expect(native.name).toBe('native');
      expect(native.kernels.threads).toBe(2);
      expect(native.kernels.native.info().threads).toBe(2);
      expect(native.caps.weightDTypes).toEqual(['f32', 'f16', 'q8_0', 'q4_0']);
      native.dispose();
    }
    const gpu = await createBackend('webgpu', { webgpu: { mode: webgpuMode, kvDType: 'f16' } });
    expect(gpu.name).toBe('webgpu');
    expect(gpu.caps).toMatchObject({ readNow: false, kvDType: 'f16' });
    gpu.dispose();
  });

  it('refuses an unknown name, naming the backends there are', async () => {
    await expect(createBackend('cuda' as 'wasm')).rejects.toThrow(
      /unknown backend "cuda" \(auto, reference, wasm, native, webgpu\)/,
    );
  });

  it('the engine and the serving configuration pick backends through it', async () => {
    const models = tinyModels();
    try {
      const engine = await loadEngine(models.make('auto', { arch: 'llama', seed: 1 }), {
        backend: 'auto',
        backendOptions: { threads: 1 },
      });
      expect(engine.backend.name).toBe(await resolveBackendName('auto'));
      engine.dispose();
    } finally {
      models.cleanup();
    }
    expect(await engineBackend(loadConfig({ KVRAG_ENGINE_BACKEND: 'auto' }))).toBe('auto');
  });
});
