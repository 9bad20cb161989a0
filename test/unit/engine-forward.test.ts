// Forward-pass identities on the reference backend: incremental decode equals a longer prefill, a
// batch equals each sequence alone, sharded and single files agree, f16 weights stay close.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { ropeInvFreq } from '../../gpu-runner/engine/rope.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let llama: Engine;
let qwen: Engine;
beforeAll(async () => {
  llama = await loadEngine(models.make('llama', { arch: 'llama', seed: 3 }));
  qwen = await loadEngine(models.make('qwen2', { arch: 'qwen2', seed: 4 }));
});
afterAll(() => models.cleanup());

const tokens = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 37 + seed * 11) % 256);

/** Logits of the last token after prefilling `prompt` alone. */
async function prefillLast(engine: Engine, prompt: number[]): Promise<Float32Array> {
  const kv = engine.newSequence(prompt.length + 4);
  const out = await engine.forward([{ kv, tokens: prompt }]);
  kv.free();
  return out;
}

describe.each([
  ['llama', () => llama],
  ['qwen2', () => qwen],
])('%s forward', (_name, get) => {
  it('prefill of N tokens then one decode step equals prefill of N+1', async () => {
    const engine = get();
    const prompt = tokens(21, 1);
    const kv = engine.newSequence(32);
    await engine.forward([{ kv, tokens: prompt.slice(0, 20) }]);
    expect(kv.length).toBe(20);
    const decoded = await engine.forward([{ kv, tokens: prompt.slice(20) }]);
    expect(kv.length).toBe(21);
    const full = await prefillLast(engine, prompt);
    expect(maxAbsDiff(decoded, full)).toBeLessThanOrEqual(1e-5);
    // and the cached K/V of the shared positions are the same as the one-shot prefill's
    const kv2 = engine.newSequence(32);
    await engine.forward([{ kv: kv2, tokens: prompt }]);
    for (const layer of [0, engine.config.layers - 1]) {
      const a = await kv.read(layer, 0, 21);
      const b = await kv2.read(layer, 0, 21);
      expect(maxAbsDiff(a.k, b.k)).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(a.v, b.v)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('a chunk computed alone at RoPE offset p equals the chunk at 0 with its keys re-rotated by p', async () => {
    const engine = get();
    const b = engine.backend;
    const chunk = tokens(12, 9);
    const p = 37;
    const at0 = engine.newSequence(12);
    const atP = engine.newSequence(12);
    await engine.forward([{ kv: at0, tokens: chunk }]);
    await engine.forward([{ kv: atP, tokens: chunk, ropeOffset: p }]);
    const { headDim, kvHeads, layers } = engine.config;
    const invFreq = b.upload({
      dtype: 'f32',
      shape: [headDim / 2],
      data: ropeInvFreq(engine.config.rope, headDim),
    });
    const delta = b.upload({ dtype: 'i32', shape: [12], data: new Int32Array(12).fill(p) });
    for (let l = 0; l < layers; l++) {
      // re-rotate layer l of the offset-0 cache in place: gather → rope by Δ → write back
      const { k, v } = b.kvGather(at0.cache, l, 0, 12);
      expect(k.shape).toEqual([12, kvHeads * headDim]);
      const k2 = b.rope(k, delta, invFreq, headDim);
      b.kvWrite(l, k2, v, [{ cache: at0.cache, row: 0, count: 12, pos: 0 }]);
      for (const t of [k, v, k2]) b.free(t);
      const a = await at0.read(l, 0, 12);
      const c = await atP.read(l, 0, 12);
      expect(maxAbsDiff(a.k, c.k)).toBeLessThanOrEqual(1e-4);
      expect(maxAbsDiff(a.v, c.v)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('a batch of sequences (prefill and decode steps) equals each run alone', async () => {
    const engine = get();
    const prompts = [tokens(5, 2), tokens(13, 3), tokens(1, 4)];
    const kvs = prompts.map(() => engine.newSequence(24));
    const vocab = engine.config.vocabSize;
    const batched = await engine.forward(prompts.map((p, i) => ({ kv: kvs[i], tokens: p })));
    for (let i = 0; i < prompts.length; i++) {
      const alone = await prefillLast(engine, prompts[i]);
      expect(maxAbsDiff(batched.subarray(i * vocab, (i + 1) * vocab), alone)).toBeLessThanOrEqual(1e-5);
    }
    // mixed step: one sequence decodes a token while another prefills three more
    const step = await engine.forward([
      { kv: kvs[0], tokens: [42] },
      { kv: kvs[1], tokens: [7, 8, 9] },
    ]);
    expect(
      maxAbsDiff(step.subarray(0, vocab), await prefillLast(engine, [...prompts[0], 42])),
    ).toBeLessThanOrEqual(1e-5);
    expect(
      maxAbsDiff(step.subarray(vocab), await prefillLast(engine, [...prompts[1], 7, 8, 9])),
    ).toBeLessThanOrEqual(1e-5);
  });
});

describe('weights', () => {
  it('a sharded model (index.json) gives the same logits as the single file', async () => {
    const sharded = await loadEngine(models.make('llama-sharded', { arch: 'llama', seed: 3, shards: 3 }));
    const prompt = tokens(9, 5);
    expect(maxAbsDiff(await prefillLast(sharded, prompt), await prefillLast(llama, prompt))).toBe(0);
    // the fingerprint hashes tensor contents, not how they are split into files
    expect(sharded.fingerprint).toBe(llama.fingerprint);
  });

  it('f16 weights on the device stay close to f32', async () => {
    const half = await loadEngine(models.make('qwen2', { arch: 'qwen2', seed: 4 }), { weightDType: 'f16' });
    const prompt = tokens(9, 6);
    const diff = maxAbsDiff(await prefillLast(half, prompt), await prefillLast(qwen, prompt));
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.05);
  });

  it('F16 safetensors load exactly as f16 device weights or widened to f32', async () => {
    const dir = models.make('llama-f16', { arch: 'llama', seed: 3, dtype: 'f16' });
    const asF16 = await loadEngine(dir, { weightDType: 'f16' });
    const asF32 = await loadEngine(dir);
    const prompt = tokens(11, 7);
    const a = await prefillLast(asF16, prompt);
    expect(maxAbsDiff(a, await prefillLast(asF32, prompt))).toBe(0);
    // and the rounding to f16 moved the logits only a little from the f32 original
    const diff = maxAbsDiff(a, await prefillLast(llama, prompt));
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.05);
  });

  it('refuses a step that names the same sequence twice', async () => {
    const kv = llama.newSequence(8);
    await expect(
      llama.forward([
        { kv, tokens: [1] },
        { kv, tokens: [2] },
      ]),
    ).rejects.toThrow(/appears twice/);
  });

  it('refuses to grow a sequence beyond its preallocated capacity', async () => {
    const kv = llama.newSequence(4);
    await expect(llama.forward([{ kv, tokens: tokens(5, 1) }])).rejects.toThrow(/capacity 4/);
    expect(kv.length).toBe(0);
  });
});
