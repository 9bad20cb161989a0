// A runner reads requests while a step computes: its scheduler's forward lets the event loop run between
// layers once a step has held it for a while, so a request sent over HTTP during a long step is parsed,
// checked and queued before that step ends, and joins the next step (not one step per event-loop turn).
// Real runner over a loopback port (reference backend); the long step is a forward whose layers each
// spin a few ms, so every layer boundary is a point where the loop runs. What runs there cannot corrupt the
// step: a drain (shutdown) at a layer boundary ends the sequence with the tokens it had, none added after.
import { afterAll, describe, expect, it } from 'vitest';
import { createRunner } from '../../gpu-runner/server/runner.ts';
import type { RunnerUsage } from '../../contracts/runner-api.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { collectSse } from '../helpers/sse.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());

const TOKEN = 'runner-arrivals-credential-0123456789abcdef';

/** A runner on a real port, its generate calls, and a switch that makes each layer of a step spin 3 ms. */
async function slowRunner(layers: number) {
  const r = await createRunner({
    modelDir: models.make(`arrivals-${layers}`, { arch: 'llama', seed: 9, layers }),
    backend: 'reference',
    blobs: new MemoryBlobStore(),
    credential: { current: TOKEN },
    port: 0,
    host: '127.0.0.1',
  });
  const { port } = await r.start();
  const base = `http://127.0.0.1:${port}`;
  const generate = async (question: string, maxTokens = 3): Promise<RunnerUsage> => {
    const res = await fetch(`${base}/v1/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ question, maxTokens, ignoreEos: true }),
    });
    const done = (await collectSse(res)).find((e) => e.event === 'done');
    return done!.data as RunnerUsage;
  };
  // a connection open already, as a client of a busy runner has one
  await (await fetch(`${base}/healthz`)).text();
  // once per layer (swiglu): `onLayer` runs, then the layer spins 3 ms while `slow` holds
  const b = r.core.engine.backend;
  const swiglu = b.swiglu.bind(b);
  const ctl = { slow: true, onLayer: () => {} };
  b.swiglu = (g, u) => {
    if (ctl.slow) {
      ctl.onLayer();
      const until = performance.now() + 3;
      while (performance.now() < until) {}
    }
    return swiglu(g, u);
  };
  return { r, generate, ctl };
}

describe('runner arrivals during a step', () => {
  it('a request sent during a long step is queued before the step ends and joins the next step', async () => {
    const { r, generate, ctl } = await slowRunner(24);
    try {
      const sched = r.core.scheduler;
      // the first layer of the first step sends the second request
      let second: Promise<RunnerUsage> | null = null;
      ctl.onLayer = () => {
        second ??= generate('And the second one?');
      };
      // the scheduler's holdings at the end of each step
      const held: { step: number; sequences: number }[] = [];
      const step = sched.step.bind(sched);
      sched.step = async () => {
        await step();
        ctl.slow = false;
        const s = sched.stats();
        held.push({ step: s.steps, sequences: s.running + s.waiting });
      };
      const a = await generate('The first question, a long one?');
      const c = await second!;
      // the first step (the first request's prefill) ended with the second request queued behind it
      expect(held[0].sequences).toBe(2);
      // which then started at the next step: its queue wait ended at the first step's end, so both
      // requests' three tokens took 1 + 3 steps in all (the second's prefill rides with the first's decode)
      expect(a.completionTokens).toBe(3);
      expect(c.completionTokens).toBe(3);
      expect(sched.stats().steps).toBe(4);
    } finally {
      await r.stop({ graceMs: 0 });
    }
  });

  it('a scheduler drained during a step ends its sequences with the tokens sent before', async () => {
    const { r, generate, ctl } = await slowRunner(8);
    const sched = r.core.scheduler;
    let drained: Promise<void> | null = null;
    // the second step's first layer drains the scheduler (no grace, as a runner's stop does): the sequence
    // ends at a breathe between that step's layers, before the step's token is accepted
    ctl.onLayer = () => {
      if (sched.stats().steps === 1) drained ??= sched.drain(0);
    };
    try {
      const usage = await generate('Stop me halfway?', 6);
      await drained;
      expect(drained).not.toBeNull();
      expect(usage.finishReason).toBe('shutdown');
      expect(usage.completionTokens).toBe(1); // the first step's token only
      expect(usage.tokens).toHaveLength(1);
    } finally {
      await r.stop({ graceMs: 0 });
    }
  });
});
