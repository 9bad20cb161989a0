// How the scheduler admits and prefills (reference backend, exact): reuse-mode requests that arrive
// together are admitted in one step, their contexts placed from artifacts and their questions prefilled in
// one batched forward (no forward of its own per admission), giving the same tokens as each alone; a long
// prefill is chunked so a decoding sequence still gets a token every step; a waiting request's artifacts
// are read into engine memory before its admission and let go when it ends while waiting.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import type { SeqRequest } from '../../gpu-runner/engine/generate/request.ts';
import { Scheduler } from '../../gpu-runner/engine/generate/scheduler.ts';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../../gpu-runner/engine/kv/engine-tier.ts';
import { chunkKey } from '../../gpu-runner/engine/kv/precompute.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { Assembler } from '../../gpu-runner/engine/reuse/assemble.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let engine: Engine;
let store: ArtifactStore;
/** An assembler over its own (empty) engine tier on the shared store. */
const assemblerWithTier = () => {
  const tier = new EngineTier(engine.backend, engine.config, store, 64 << 20);
  return { tier, assembler: new Assembler(engine, tier, { dtype: 'f32' }) };
};
beforeAll(async () => {
  engine = await loadEngine(models.make('admission', { arch: 'llama', seed: 11 }));
  store = new ArtifactStore({
    fingerprint: engine.fingerprint,
    tokenizerHash: engine.tokenizer.hash,
    host: new HostTier(64 << 20),
  });
});
afterAll(() => {
  engine.dispose();
  models.cleanup();
});

const docs = ['Paris is in France. ', 'The Nile is long. ', 'Water boils at 100 C. ', 'Cats purr. '];
const reuseReq = (i: number, maxTokens = 8): SeqRequest => ({
  system: engine.encode('You answer briefly.'),
  chunks: [engine.encode(docs[i % 4]), engine.encode(docs[(i + 1) % 4])],
  question: engine.encode(`Question ${i}: ${'why '.repeat(i)}?`),
  mode: 'independent',
  maxTokens,
  stopTokenIds: [],
});

/** Counts Model.forward calls while `fn` runs. */
async function countForwards(fn: () => Promise<void>): Promise<number> {
  const model = engine.model;
  const forward = model.forward;
  let calls = 0;
  model.forward = (...args) => {
    calls++;
    return forward.apply(model, args);
  };
  try {
    await fn();
  } finally {
    model.forward = forward;
  }
  return calls;
}

describe('scheduler admission', () => {
  it('admits reuse-mode arrivals in one step and prefills their questions in one forward', async () => {
    const reqs = [0, 1, 2, 3].map((i) => reuseReq(i));
    const { assembler } = assemblerWithTier();
    // alone, one at a time (this also stores every chunk's artifact)
    const solo = new Scheduler(engine, { maxRunning: 1, assembler });
    const alone: number[][] = [];
    for (const r of reqs) alone.push((await solo.submit(r)).tokens);

    const steps: { decode: number; prefill: number }[] = [];
    const busy = new Scheduler(engine, {
      assembler,
      background: false,
      observer: { step: (s) => steps.push(s) },
    });
    const seqs = reqs.map((r) => busy.enqueue(r));
    const forwards = await countForwards(() => busy.step());
    // one step: every context placed from artifacts, every question through one batched forward
    expect(forwards).toBe(1);
    expect(steps[0]).toEqual(
      expect.objectContaining({ decode: 0, prefill: reqs.reduce((s, r) => s + r.question.length, 0) }),
    );
    expect(seqs.map((s) => s.generated.length)).toEqual([1, 1, 1, 1]);
    // then they decode together: one forward per step
    const more = await countForwards(() => busy.run());
    const usages = await Promise.all(seqs.map((s) => s.done));
    expect(more).toBe(steps.length - 1);
    expect(usages.map((u) => u.tokens)).toEqual(alone);
    for (const [i, u] of usages.entries()) {
      const r = reqs[i];
      expect(u.cachedTokens).toBe(r.system.length + r.chunks.flat().length);
      expect(u.prefillTokens).toBe(r.question.length);
      expect(u.timingsMs.load).toBeGreaterThanOrEqual(0);
      expect(u.timingsMs.rotate).toBeGreaterThan(0);
      expect(u.timingsMs.prefill).toBeGreaterThanOrEqual(0);
    }
    expect(busy.stats().kvBytesInUse).toBe(0);
  });

  it('a long prefill runs in chunks while a decoding sequence gets a token every step', async () => {
    const budget = 16;
    const short = { ...reuseReq(1, 40), question: engine.encode('Why?') };
    const long: SeqRequest = {
      system: [],
      chunks: [],
      question: engine.encode('A long prompt. '.repeat(12)),
      mode: 'full',
      maxTokens: 4,
      stopTokenIds: [],
    };
    const { assembler } = assemblerWithTier();
    const solo = new Scheduler(engine, { maxRunning: 1, assembler });
    const longAlone = (await solo.submit(long)).tokens;
    const shortAlone = (await solo.submit(short)).tokens;

    const s = new Scheduler(engine, { assembler, maxStepTokens: budget, background: false });
    const a = s.enqueue(short);
    await s.step(); // its question prefilled, first token sampled
    expect(a.phase).toBe('decode');
    const b = s.enqueue(long);
    // each step: a's decode token, then b's prefill takes the rest of the budget
    const prefillSteps = Math.ceil(long.question.length / (budget - 1));
    expect(prefillSteps).toBeGreaterThan(1);
    for (let i = 0; i < prefillSteps; i++) {
      const before = a.generated.length;
      expect(b.generated.length).toBe(0);
      await s.step();
      expect(a.generated.length).toBe(before + 1);
    }
    expect(b.generated.length).toBe(1);
    await s.run();
    expect((await a.done).tokens).toEqual(shortAlone);
    expect((await b.done).tokens).toEqual(longAlone);
  });

  it('the background loop admits the arrivals of the turn that woke it in its first step', async () => {
    const req = (q: string): SeqRequest => ({
      system: [],
      chunks: [],
      question: engine.encode(q),
      mode: 'full',
      maxTokens: 3,
      stopTokenIds: [],
    });
    const reqs = [req('First question?'), req('A second one, a bit longer?')];
    const solo = new Scheduler(engine, { maxRunning: 1 });
    const alone: number[][] = [];
    for (const r of reqs) alone.push((await solo.submit(r)).tokens);

    const steps: { decode: number; prefill: number }[] = [];
    const s = new Scheduler(engine, { observer: { step: (x) => steps.push(x) } });
    // two I/O callbacks of one event-loop turn (as two HTTP requests read in one poll phase): the first
    // wakes the idle loop, the second arrives before the loop's first step
    const done = await new Promise<Promise<unknown>[]>((resolve) => {
      const out: Promise<unknown>[] = [];
      setImmediate(() => out.push(s.submit(reqs[0])));
      setImmediate(() => resolve([...out, s.submit(reqs[1])]));
    });
    const usages = (await Promise.all(done)) as Awaited<ReturnType<Scheduler['submit']>>[];
    expect(steps[0]).toEqual(
      expect.objectContaining({ decode: 0, prefill: reqs[0].question.length + reqs[1].question.length }),
    );
    expect(steps).toHaveLength(3); // one step for both prompts, then a decode step per further token
    expect(usages.map((u) => u.tokens)).toEqual(alone);
  });

  it('a burst whose requests arrive a few ms apart shares the first step (the admission window)', async () => {
    const req = (i: number): SeqRequest => ({
      system: [],
      chunks: [],
      question: engine.encode(`Burst question ${i}?`),
      mode: 'full',
      maxTokens: 2,
      stopTokenIds: [],
    });
    // four arrivals ~1 ms apart (later event-loop turns, as a burst's HTTP requests are parsed)
    const burst = async (opts: { batchWindowMs?: number }) => {
      const steps: { prefill: number }[] = [];
      const s = new Scheduler(engine, { ...opts, observer: { step: (x) => steps.push(x) } });
      const done: Promise<unknown>[] = [];
      for (let i = 0; i < 4; i++) {
        done.push(s.submit(req(i)));
        await new Promise((r) => setTimeout(r, 1));
      }
      await Promise.all(done);
      return steps.filter((x) => x.prefill > 0).length;
    };
    // the window's cap is wide here so a stalled machine cannot end it early: the gap rule is what is tested
    expect(await burst({ batchWindowMs: 1000 })).toBe(1); // one step prefills all four questions
    expect(await burst({ batchWindowMs: 0 })).toBeGreaterThan(1); // stepping at once admits them apart
  });

  it('the admission window waits for a request still being read, however long its read takes', async () => {
    const req = (i: number): SeqRequest => ({
      system: [],
      chunks: [],
      question: engine.encode(`Slow arrival ${i}?`),
      mode: 'full',
      maxTokens: 2,
      stopTokenIds: [],
    });
    // the first request is queued; the second is announced as being read and reaches submit() 20 ms later
    // (a long body, a long text to tokenize) — past the window's 2 quiet ms, within its cap
    const firstStepPrefills = async (announce: boolean) => {
      const steps: { prefill: number }[] = [];
      const s = new Scheduler(engine, { batchWindowMs: 1000, observer: { step: (x) => steps.push(x) } });
      const read = announce ? s.arriving() : () => {};
      const first = s.submit(req(0));
      await new Promise((r) => setTimeout(r, 20));
      const second = s.submit(req(1));
      read();
      await Promise.all([first, second]);
      return steps[0].prefill;
    };
    const [a, b] = [req(0).question.length, req(1).question.length];
    expect(await firstStepPrefills(true)).toBe(a + b); // both questions in the first step
    expect(await firstStepPrefills(false)).toBe(a); // unannounced, the window closed after 2 quiet ms
  });

  it("reads a waiting request's artifacts ahead and lets go of them when it ends waiting", async () => {
    const { assembler } = assemblerWithTier();
    await new Scheduler(engine, { assembler }).submit(reuseReq(2)); // stores its artifacts
    const { tier, assembler: fresh } = assemblerWithTier();
    const r = reuseReq(2, 4);
    const keys = [r.system, ...r.chunks].map((t) => chunkKey(engine, t, 'f32'));
    expect(keys.some((k) => tier.has(k))).toBe(false);

    const s = new Scheduler(engine, { assembler: fresh, maxRunning: 1, background: false });
    const first = s.enqueue({ ...reuseReq(0, 40), mode: 'full' });
    await s.step();
    const ac = new AbortController();
    const waiting = s.enqueue({ ...r, signal: ac.signal });
    await s.step();
    // the reads run on their own (host tier → engine memory), whatever the steps do
    for (let i = 0; i < 100 && !keys.every((k) => tier.has(k)); i++)
      await new Promise((done) => setImmediate(done));
    // still queued behind `first`, its artifacts already in engine memory and held there
    expect(waiting.phase).toBe('waiting');
    expect(keys.every((k) => tier.has(k))).toBe(true);
    expect(keys.map((k) => tier.forget(k))).toEqual(keys.map(() => false));
    ac.abort();
    await s.step();
    expect((await waiting.done).finishReason).toBe('aborted');
    expect(keys.map((k) => tier.forget(k))).toEqual(keys.map(() => true));
    await s.run();
    expect((await first.done).finishReason).toBe('length');

    // served from its prefetch: each artifact read from the store once, no second engine-tier lookup
    const again = new Scheduler(engine, { assembler: fresh, maxRunning: 1, background: false });
    const blocker = again.enqueue({ ...reuseReq(0, 6), mode: 'full' });
    const served = again.enqueue(r);
    await again.run();
    const u = await served.done;
    expect(u.finishReason).toBe('length');
    expect((await blocker.done).finishReason).toBe('length');
    expect(tier.stats().misses).toBe(2 * keys.length);
    expect(tier.stats().hits).toBe(0);
    expect(u.bytesLoaded.host).toBeGreaterThan(0);
  });
});
