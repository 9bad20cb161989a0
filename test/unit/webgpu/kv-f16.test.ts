// The webgpu backend's f16 KV cache (kvDType: 'f16'): kvLoad/kvRead round-trip f16-rounded values
// exactly; kvWrite rounds on the device to within one f16 ulp of the host's rounding; kvGather matches
// kvRead; whole-model logits stay within 1e-2 of the f32 reference (keys and values carry f16 rounding,
// ~5e-4 relative; attention and everything else stay f32) and greedy tokens agree.
import { afterAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../../gpu-runner/engine/engine.ts';
import { f16Table, f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { maxAbsDiff, tinyModels } from '../../helpers/tiny-model.ts';
import { rand } from '../../helpers/wasm-runtime.ts';
import { makeWebGPU } from '../../helpers/webgpu.ts';

const models = tinyModels();
afterAll(() => models.cleanup());
const roundF16 = (x: Float32Array) => Float32Array.from(f32ToF16(x), (h) => f16Table[h]);

describe('webgpu f16 KV cache', () => {
  it('kvLoad/kvRead are exact on f16 values; kvWrite rounds within one ulp; kvGather agrees', async () => {
    const b = await makeWebGPU({ kvDType: 'f16' });
    const spec = { layers: 2, kvHeads: 2, headDim: 8, capacity: 12 };
    const c = b.createKVCache(spec);
    const block = { k: rand(2 * 5 * 8, 1, 3), v: rand(2 * 5 * 8, 2, 3) };
    b.kvLoad(c, 1, 3, block);
    const got = await b.kvRead(c, 1, 3, 5);
    expect(got.k).toEqual(roundF16(block.k));
    expect(got.v).toEqual(roundF16(block.v));
    const k = rand(4 * 16, 3, 3);
    const v = rand(4 * 16, 4, 3);
    b.kvWrite(
      0,
      b.upload({ dtype: 'f32', shape: [4, 16], data: k }),
      b.upload({ dtype: 'f32', shape: [4, 16], data: v }),
      [{ cache: c, row: 1, count: 3, pos: 7 }],
    );
    const w = await b.kvRead(c, 0, 7, 3); // [kv_head][pos][d]
    for (let h = 0; h < 2; h++)
      for (let p = 0; p < 3; p++)
        for (let d = 0; d < 8; d++) {
          const want = k[(1 + p) * 16 + h * 8 + d];
          expect(Math.abs(w.k[(h * 3 + p) * 8 + d] - want)).toBeLessThanOrEqual(
            Math.abs(want) * 2 ** -10 + 1e-7,
          );
        }
    const g = b.kvGather(c, 0, 7, 3); // [pos][kv_head·d]
    const gk = await b.read(g.k);
    for (let h = 0; h < 2; h++)
      for (let p = 0; p < 3; p++)
        for (let d = 0; d < 8; d++) expect(gk[p * 16 + h * 8 + d]).toBe(w.k[(h * 3 + p) * 8 + d]);
    b.dispose();
  });

  it('whole-model logits within 1e-2 of the f32 reference; greedy tokens agree', async () => {
    const dir = models.make('kv16', { arch: 'llama', seed: 8, heads: 8, kvHeads: 2 });
    const ref = await loadEngine(dir);
    const dev = await loadEngine(dir, { backend: await makeWebGPU({ kvDType: 'f16' }) });
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 13 + 5) % 256);
    const run = async (e: typeof ref) => {
      const kv = e.newSequence(48);
      const out = [await e.forward([{ kv, tokens: prompt }], 'all')];
      for (let s = 0; s < 3; s++) out.push(await e.forward([{ kv, tokens: [s + 1] }]));
      const state = await kv.read(1, 0, 43);
      kv.free();
      return { out, state };
    };
    const a = await run(ref);
    const d = await run(dev);
    a.out.forEach((o, i) => {
      const err = maxAbsDiff(d.out[i], o);
      expect(err).toBeLessThanOrEqual(1e-2);
    });
    expect(d.state.k).toEqual(roundF16(d.state.k)); // the cache really holds halves
    expect(maxAbsDiff(d.state.k, a.state.k)).toBeGreaterThan(0);
    const req = { prompt: prompt.slice(0, 12), maxTokens: 8, stopTokenIds: [] };
    expect((await dev.generate([req]))[0].tokens).toEqual((await ref.generate([req]))[0].tokens);
    dev.dispose();
    ref.dispose();
  });
});
