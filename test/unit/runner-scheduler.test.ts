// The runner's continuous-batching scheduler on the reference backend (exact): concurrent greedy
// requests equal the same requests run alone, with chunked prefill, KV growth and preemption by
// recompute under a tight memory cap; cancellation and deadlines free KV memory; FIFO admission.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../../gpu-runner/engine/kv/engine-tier.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { Assembler } from '../../gpu-runner/engine/reuse/assemble.ts';
import { Scheduler } from '../../gpu-runner/engine/generate/scheduler.ts';
import type { SeqRequest } from '../../gpu-runner/engine/generate/request.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let engine: Engine;
beforeAll(async () => {
  engine = await loadEngine(models.make('llama', { arch: 'llama', seed: 5 }));
});
afterAll(() => {
  engine.dispose();
  models.cleanup();
});

const questions = Array.from(
  { length: 16 },
  (_, i) => `Question ${i}: ${'why '.repeat(i % 5)}is the sky blue?`,
);
const req = (q: string, maxTokens: number): SeqRequest => ({
  system: engine.encode('You answer briefly.'),
  chunks: [],
  question: engine.encode(q),
  mode: 'full',
  maxTokens,
  stopTokenIds: [],
});

describe('scheduler', () => {
  it('16 concurrent greedy requests give the same tokens as one by one, under preemption', async () => {
    const alone: number[][] = [];
    const solo = new Scheduler(engine, { maxRunning: 1 });
    for (const q of questions) alone.push((await solo.submit(req(q, 24))).tokens);
    expect(solo.stats().kvBytesInUse).toBe(0);
    // direct engine.generate agrees with the scheduler run alone
    const [direct] = await engine.generate([
      {
        prompt: req(questions[3], 24).system.concat(req(questions[3], 24).question),
        maxTokens: 24,
        stopTokenIds: [],
      },
    ]);
    expect(alone[3]).toEqual(direct.tokens);

    // small step budget (chunked prefill), small growth blocks, and memory for ~5 sequences' worth:
    // sequences must grow and preempt each other
    const bpp = solo.bytesPerPosition;
    const longest =
      Math.max(...questions.map((q) => req(q, 24).question.length + req(q, 24).system.length)) + 24;
    const busy = new Scheduler(engine, {
      maxRunning: 16,
      maxStepTokens: 48,
      growBlock: 4,
      kvBytes: longest * 5 * bpp,
    });
    const usages = await Promise.all(questions.map((q) => busy.submit(req(q, 24))));
    expect(usages.map((u) => u.tokens)).toEqual(alone);
    expect(usages.every((u) => u.finishReason === 'length')).toBe(true);
    const stats = busy.stats();
    expect(stats.preemptions).toBeGreaterThan(0);
    expect(usages.some((u) => u.preemptions > 0)).toBe(true);
    expect(stats.kvBytesInUse).toBe(0);
    expect(stats.running + stats.waiting).toBe(0);
    // text streamed equals the final text
    expect(usages[0].text).toBe(engine.decode(usages[0].tokens));
  });

  it('reuse modes: concurrent = one by one, also when preempted sequences are re-assembled', async () => {
    const store = new ArtifactStore({
      fingerprint: engine.fingerprint,
      tokenizerHash: engine.tokenizer.hash,
      host: new HostTier(64 << 20),
    });
    const assembler = new Assembler(engine, new EngineTier(engine.backend, engine.config, store, 64 << 20), {
      dtype: 'f32',
    });
    const docs = ['Paris is in France. ', 'The Nile is long. ', 'Water boils at 100 C. ', 'Cats purr. '];
    const reuse = (i: number, mode: 'independent' | 'blend' | 'link'): SeqRequest => ({
      ...req(questions[i], 20),
      chunks: [engine.encode(docs[i % 4]), engine.encode(docs[(i + 1) % 4])],
      mode,
    });
    const modes = ['independent', 'blend', 'link'] as const;
    const reqs = questions.slice(0, 12).map((_, i) => reuse(i, modes[i % 3]));
    const solo = new Scheduler(engine, { maxRunning: 1, assembler });
    const alone: number[][] = [];
    for (const r of reqs) alone.push((await solo.submit(r)).tokens);
    const longest =
      Math.max(...reqs.map((r) => r.system.length + r.chunks.flat().length + r.question.length)) + 20;
    const busy = new Scheduler(engine, {
      assembler,
      maxStepTokens: 16,
      growBlock: 4,
      kvBytes: longest * 4 * solo.bytesPerPosition,
    });
    const usages = await Promise.all(reqs.map((r) => busy.submit(r)));
    expect(usages.map((u) => u.tokens)).toEqual(alone);
    expect(busy.stats().preemptions).toBeGreaterThan(0);
    expect(usages.every((u) => u.cachedTokens > 0)).toBe(true);
    expect(busy.stats().kvBytesInUse).toBe(0);
  });

  it('seeded sampling gives the same tokens batched as alone (host-side sampling path)', async () => {
    const sampled = (q: string, seed: number): SeqRequest => ({
      ...req(q, 16),
      sampling: { temperature: 0.9, topK: 20, seed },
    });
    const solo = new Scheduler(engine, { maxRunning: 1 });
    const alone: number[][] = [];
    for (const [i, q] of questions.slice(0, 6).entries())
      alone.push((await solo.submit(sampled(q, i + 1))).tokens);
    const busy = new Scheduler(engine, { maxStepTokens: 32 });
    const mixed = await Promise.all(questions.slice(0, 6).map((q, i) => busy.submit(sampled(q, i + 1))));
    expect(mixed.map((u) => u.tokens)).toEqual(alone);
    // a greedy request in the same batch still follows the argmax
    const greedyAlone = (await solo.submit(req(questions[9], 16))).tokens;
    const [, greedyMixed] = await Promise.all([
      busy.submit(sampled(questions[0], 1)),
      busy.submit(req(questions[9], 16)),
    ]);
    expect(greedyMixed.tokens).toEqual(greedyAlone);
  });

  it('streams text deltas that add up to the final text', async () => {
    const s = new Scheduler(engine);
    let streamed = '';
    const u = await s.submit({ ...req('Hello?', 16), onText: (d) => (streamed += d) });
    expect(streamed).toBe(u.text);
    expect(u.completionTokens).toBe(16);
    expect(u.promptTokens).toBe(req('Hello?', 16).system.length + req('Hello?', 16).question.length);
    expect(u.timingsMs.ttft).toBeGreaterThan(0);
  });

  it('an aborted request ends and frees its KV memory while others continue', async () => {
    const s = new Scheduler(engine, { maxStepTokens: 64 });
    const ac = new AbortController();
    let tokens = 0;
    const long = s.submit({
      ...req('Tell me a long story.', 400),
      signal: ac.signal,
      onToken: () => {
        if (++tokens === 5) ac.abort();
      },
    });
    const other = s.submit(req('Short one.', 8));
    const u = await long;
    expect(u.finishReason).toBe('aborted');
    expect(u.completionTokens).toBeLessThan(10);
    expect((await other).finishReason).toBe('length');
    expect(s.stats().kvBytesInUse).toBe(0);
  });

  it('a request past its deadline ends with reason deadline', async () => {
    const s = new Scheduler(engine);
    const u = await s.submit({ ...req('Deadline?', 400), deadline: performance.now() + 30 });
    expect(u.finishReason).toBe('deadline');
    expect(u.completionTokens).toBeLessThan(400);
    expect(s.stats().kvBytesInUse).toBe(0);
  });

  it('admits in arrival order when only one sequence fits', async () => {
    const s = new Scheduler(engine, { maxRunning: 1 });
    const order: number[] = [];
    await Promise.all([0, 1, 2, 3].map((i) => s.submit(req(`q${i}`, 3)).then(() => order.push(i))));
    expect(order).toEqual([0, 1, 2, 3]);
  });

  it('refuses requests that can never run', () => {
    const s = new Scheduler(engine, { kvBytes: 1024 });
    expect(() => s.submit(req('x', 4))).toThrow(/KV memory/);
    expect(() => s.submit({ ...req('x', 4), maxTokens: 0 })).toThrow(/maxTokens/);
    expect(() => s.submit({ ...req('x', engine.maxContext) })).toThrow(/context/);
  });
});

describe('scheduler on the wasm backend', () => {
  it('16 concurrent greedy requests give the same tokens as one by one', async () => {
    const wasm = await loadEngine(models.make('llama-w', { arch: 'llama', seed: 5 }), { backend: 'wasm' });
    try {
      const r = (q: string): SeqRequest => ({
        system: wasm.encode('S.'),
        chunks: [],
        question: wasm.encode(q),
        mode: 'full',
        maxTokens: 24,
        stopTokenIds: [],
      });
      const solo = new Scheduler(wasm, { maxRunning: 1 });
      const alone: number[][] = [];
      for (const q of questions) alone.push((await solo.submit(r(q))).tokens);
      const busy = new Scheduler(wasm, { maxStepTokens: 48 });
      const together = await Promise.all(questions.map((q) => busy.submit(r(q))));
      expect(together.map((u) => u.tokens)).toEqual(alone);
    } finally {
      wasm.dispose();
    }
  });
});
