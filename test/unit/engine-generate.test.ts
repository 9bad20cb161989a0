// Generation on the reference backend: determinism, seeded sampling, batching, stop conditions,
// streaming.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import type { GenerateRequest } from '../../gpu-runner/engine/generate/request.ts';
import { InvalidRequestError } from '../../gpu-runner/engine/errors.ts';
import { argmax } from '../../gpu-runner/engine/sampler.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let engine: Engine;
let prompt: number[];
beforeAll(async () => {
  engine = await loadEngine(models.make('llama', { arch: 'llama', seed: 5 }));
  prompt = engine.encodeChat([{ role: 'user', content: 'Name a colour.' }]);
});
afterAll(() => models.cleanup());

const one = async (req: Omit<GenerateRequest, 'prompt'> & { prompt?: number[] }) =>
  (await engine.generate([{ prompt, ...req }]))[0];

describe('generation', () => {
  it('greedy generation is deterministic and follows the argmax of the logits', async () => {
    const a = await one({ maxTokens: 12, stopTokenIds: [] });
    const b = await one({ maxTokens: 12, stopTokenIds: [] });
    expect(a.tokens).toHaveLength(12);
    expect(a.finishReason).toBe('length');
    expect(b.tokens).toEqual(a.tokens);
    // the same tokens by hand: prefill, then feed back the argmax
    const kv = engine.newSequence(prompt.length + 12);
    const manual: number[] = [];
    let next = prompt;
    for (let i = 0; i < 12; i++) {
      const logits = await engine.forward([{ kv, tokens: next }]);
      manual.push(argmax(logits));
      next = [manual[i]];
    }
    expect(a.tokens).toEqual(manual);
  });

  it('seeded sampling is reproducible, and different seeds differ', async () => {
    const s = (seed: number) =>
      one({ maxTokens: 16, stopTokenIds: [], sampling: { temperature: 1.2, seed } });
    const a = await s(1);
    const b = await s(1);
    const c = await s(2);
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    const k = (seed: number) =>
      one({ maxTokens: 16, stopTokenIds: [], sampling: { temperature: 0.8, topK: 5, topP: 0.9, seed } });
    expect((await k(9)).tokens).toEqual((await k(9)).tokens);
  });

  it('top-k 1 and a tiny top-p both reduce to greedy', async () => {
    const greedy = await one({ maxTokens: 8, stopTokenIds: [] });
    const k1 = await one({ maxTokens: 8, stopTokenIds: [], sampling: { temperature: 1, topK: 1, seed: 3 } });
    const p0 = await one({
      maxTokens: 8,
      stopTokenIds: [],
      sampling: { temperature: 1, topP: 1e-6, seed: 3 },
    });
    expect(k1.tokens).toEqual(greedy.tokens);
    expect(p0.tokens).toEqual(greedy.tokens);
  });

  it('a batch of requests gives each request the tokens it gets alone', async () => {
    const other = engine.tokenizer.encodeWithSpecials('<|bos|><|doc|>kv caches<|/doc|>');
    const reqs: GenerateRequest[] = [
      { prompt, maxTokens: 10, stopTokenIds: [] },
      { prompt: other, maxTokens: 6, stopTokenIds: [], sampling: { temperature: 1, seed: 4 } },
      { prompt: other.slice(0, 3), maxTokens: 9, stopTokenIds: [] },
    ];
    const batched = await engine.generate(reqs);
    for (let i = 0; i < reqs.length; i++) {
      const [alone] = await engine.generate([reqs[i]]);
      expect(batched[i].tokens).toEqual(alone.tokens);
      expect(batched[i].tokens).toHaveLength(reqs[i].maxTokens);
    }
  });

  it('stops at a stop token, which is not part of the output', async () => {
    const free = await one({ maxTokens: 10, stopTokenIds: [] });
    const stopId = free.tokens[4];
    const firstAt = free.tokens.indexOf(stopId);
    const stopped = await one({ maxTokens: 10, stopTokenIds: [stopId] });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.tokens).toEqual(free.tokens.slice(0, firstAt));
  });

  it('stops at a stop string: output cut before it, and streaming never shows any of it', async () => {
    // a model whose greedy output is printable: feed it text until its continuation has a stop candidate
    const free = await one({ maxTokens: 24, stopTokenIds: [] });
    const text = free.text;
    const stop = text.slice(6, 9);
    expect(stop.length).toBe(3);
    const streamed: string[] = [];
    const r = await one({
      maxTokens: 24,
      stopTokenIds: [],
      stopStrings: [stop],
      onText: (d) => streamed.push(d),
    });
    expect(r.finishReason).toBe('stop');
    expect(r.text).toBe(text.slice(0, text.indexOf(stop)));
    expect(streamed.join('')).toBe(r.text);
  });

  it('streams text deltas that add up to the final text, and emits each token id', async () => {
    const deltas: string[] = [];
    const ids: number[] = [];
    const r = await one({
      maxTokens: 20,
      stopTokenIds: [],
      onText: (d) => deltas.push(d),
      onToken: (id) => ids.push(id),
    });
    expect(deltas.join('')).toBe(r.text);
    expect(ids).toEqual(r.tokens);
    expect(r.text).toBe(engine.decode(r.tokens));
    expect(r.ttftMs).toBeGreaterThan(0);
  });

  it('stops when aborted and with the eos ids from config.json by default', async () => {
    const ac = new AbortController();
    let n = 0;
    const r = await one({
      maxTokens: 50,
      stopTokenIds: [],
      signal: ac.signal,
      onToken: () => {
        if (++n === 3) ac.abort();
      },
    });
    expect(r.finishReason).toBe('aborted');
    expect(r.tokens).toHaveLength(3);
    expect([...engine.stopTokenIds].sort()).toEqual([257, 264]);
  });

  it('rejects a prompt that cannot fit the context as an invalid request (the runner answers 400)', async () => {
    await expect(one({ maxTokens: engine.maxContext })).rejects.toThrow(InvalidRequestError);
    await expect(one({ maxTokens: engine.maxContext })).rejects.toThrow(/exceed the model context 512/);
    await expect(one({ prompt: [], maxTokens: 1 })).rejects.toThrow(InvalidRequestError);
  });
});
