// webgpu device handling: a lost device fails the readback in flight with a retryable DeviceLostError,
// then the backend opens a new device, restores the uploaded weights, and the same forward pass gives
// the reference logits again; asking for a native adapter either opens a hardware one or fails with
// WebGPUUnavailableError saying what to install; greedy decode reads back only token ids.
import { afterAll, describe, expect, it } from 'vitest';
import {
  createWebGPUBackend,
  DeviceLostError,
  type DeviceInfo,
  WebGPUUnavailableError,
} from '../../../gpu-runner/engine/backends/webgpu/index.ts';
import { createReferenceBackend } from '../../../gpu-runner/engine/backends/reference/index.ts';
import { loadEngine } from '../../../gpu-runner/engine/engine.ts';
import { f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { maxAbsDiff, tinyModels } from '../../helpers/tiny-model.ts';
import { rand, relErr } from '../../helpers/wasm-runtime.ts';
import { makeWebGPU } from '../../helpers/webgpu.ts';

const models = tinyModels();
afterAll(() => models.cleanup());
const prompt = Array.from({ length: 17 }, (_, i) => (i * 29 + 3) % 256);

describe('webgpu device', () => {
  it('device loss fails the request in flight, then the backend recovers with its weights', async () => {
    const dir = models.make('lost', { arch: 'llama', seed: 5 });
    const ref = await loadEngine(dir);
    const backend = await makeWebGPU();
    const engine = await loadEngine(dir, { backend });
    const want = await ref.forward([{ kv: ref.newSequence(32), tokens: prompt }]);
    let lost = '';
    backend.kernels.dev.onDeviceLost = (reason) => {
      lost = reason;
    };
    const kv = engine.newSequence(32);
    const logits = engine.model.forward([{ kv, tokens: prompt }], 'last');
    const pending = backend.read(logits);
    backend.kernels.dev.device.destroy(); // what a driver reset or a GPU falling off the bus looks like to Dawn
    const err = await pending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceLostError);
    expect((err as DeviceLostError).retryable).toBe(true);
    await backend.kernels.ready();
    expect(lost).toMatch(/destroyed/);
    await expect(backend.read(logits)).rejects.toThrow(DeviceLostError); // computed on the lost device
    const again = await engine.forward([{ kv: engine.newSequence(32), tokens: prompt }]);
    expect(maxAbsDiff(again, want)).toBeLessThanOrEqual(1e-4);
    engine.dispose();
    ref.dispose();
  });

  it('a native adapter opens a hardware device or fails with what to install', async () => {
    const got: DeviceInfo | Error = await createWebGPUBackend({ mode: 'native' }).then(
      (b) => {
        const info = b.kernels.info;
        b.dispose();
        return info;
      },
      (e: unknown) => e as Error,
    );
    if (got instanceof Error) {
      expect(got).toBeInstanceOf(WebGPUUnavailableError);
      expect(got.message).toMatch(
        /no WebGPU adapter: tried Vulkan\/Metal\/D3D12.*libvulkan1.*KVRAG_WEBGPU_ADAPTER=opengl/s,
      );
    } else {
      expect(got.featureLevel).toBe('core');
    }
  });

  it('greedy generation: one submit per step reads back only the token ids', async () => {
    const dir = models.make('greedy', { arch: 'qwen2', seed: 6 });
    const ref = await loadEngine(dir);
    const backend = await makeWebGPU();
    const engine = await loadEngine(dir, { backend });
    const req = { prompt: prompt.slice(0, 9), maxTokens: 6, stopTokenIds: [] };
    const [a] = await ref.generate([req]);
    const before = backend.kernels.dev.rec.submits;
    const [b] = await engine.generate([req]);
    expect(b.tokens).toEqual(a.tokens);
    expect(backend.kernels.dev.rec.submits - before).toBe(6); // prefill + 5 decode steps, one readback each
    expect(backend.kernels.dev.rec.readbackBytes).toBe(6 * 4); // one i32 token id per step
    engine.dispose();
    ref.dispose();
  });

  it('the subgroup-matrix matmul runs only where listed and after matching the tiled kernel', async () => {
    const b = await makeWebGPU();
    try {
      if (!b.kernels.info.subgroupMatrix) {
        expect(b.kernels.subgroupMatrix).toBe('unavailable'); // llvmpipe: no subgroup matrices
        return;
      }
      expect(b.kernels.subgroupMatrix).toMatch(/^(on|off \()/);
      const ref = createReferenceBackend();
      const [M, K, N] = [64, 128, 96];
      const x = rand(M * K, 1);
      const w = f32ToF16(rand(N * K, 2, 0.5));
      const want = await ref.read(
        ref.matmul(
          ref.upload({ dtype: 'f32', shape: [M, K], data: x }),
          ref.upload({ dtype: 'f16', shape: [N, K], data: w }),
        ),
      );
      const got = await b.read(
        b.matmul(
          b.upload({ dtype: 'f32', shape: [M, K], data: x }),
          b.upload({ dtype: 'f16', shape: [N, K], data: w }),
        ),
      );
      expect(relErr(got, want)).toBeLessThanOrEqual(b.kernels.subgroupMatrix === 'on' ? 5e-3 : 1e-6);
    } finally {
      b.dispose();
    }
  });
});
