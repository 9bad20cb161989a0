// A runner reads requests while a step computes: its scheduler's forward lets the event loop run between
// layers once a step has held it for a while, so a request sent over HTTP during a long step is parsed,
// checked and queued before that step ends, and joins the next step (not one step per event-loop turn).
// Real runner over a loopback port (reference backend); the long step is a forward whose layers each
// spin a few ms, so every layer boundary is a point where the loop runs.
import { afterAll, describe, expect, it } from 'vitest';
import { createRunner } from '../../gpu-runner/server/runner.ts';
import type { RunnerUsage } from '../../contracts/runner-api.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { collectSse } from '../helpers/sse.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
afterAll(() => models.cleanup());

const TOKEN = 'runner-arrivals-credential-0123456789abcdef';

describe('runner arrivals during a step', () => {
  it('a request sent during a long step is queued before the step ends and joins the next step', async () => {
    const layers = 24;
    const r = await createRunner({
      modelDir: models.make('arrivals', { arch: 'llama', seed: 9, layers }),
      backend: 'reference',
      blobs: new MemoryBlobStore(),
      credential: { current: TOKEN },
      port: 0,
      host: '127.0.0.1',
    });
    const { port } = await r.start();
    const base = `http://127.0.0.1:${port}`;
    const generate = async (question: string): Promise<RunnerUsage> => {
      const res = await fetch(`${base}/v1/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify({ question, maxTokens: 3, ignoreEos: true }),
      });
      const done = (await collectSse(res)).find((e) => e.event === 'done');
      return done!.data as RunnerUsage;
    };
    try {
      // a connection open already, as a client of a busy runner has one
      await (await fetch(`${base}/healthz`)).text();
      const sched = r.core.scheduler;
      const b = r.core.engine.backend;
      // every layer of the first step spins (once per layer: swiglu); its first layer sends the second request
      const swiglu = b.swiglu.bind(b);
      let slow = true;
      let second: Promise<RunnerUsage> | null = null;
      b.swiglu = (g, u) => {
        if (slow) {
          second ??= generate('And the second one?');
          const until = performance.now() + 3;
          while (performance.now() < until) {}
        }
        return swiglu(g, u);
      };
      // the scheduler's holdings at the end of each step
      const held: { step: number; sequences: number }[] = [];
      const step = sched.step.bind(sched);
      sched.step = async () => {
        await step();
        slow = false;
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
});
