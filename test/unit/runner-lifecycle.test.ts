// An in-process runner (no port: app.fetch, as embedded serve uses it), memory blob store and registry:
// heartbeats carry load, free KV memory and the resident artifacts, expire after their TTL and leave on
// stop; graceful stop lets running requests finish within the grace period, refuses new work with 503
// (readyz too), and ends what is left after it with reason `shutdown`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heartbeatOf, startHeartbeat } from '../../gpu-runner/server/heartbeat-loop.ts';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import type { RunnerUsage } from '../../contracts/runner-api.ts';
import { BloomFilter } from '../../contracts/bloom.ts';
import { runnerHeartbeatSchema } from '../../contracts/heartbeat.ts';
import { heartbeatRefusal } from '../../src/routing/heartbeat-trust.ts';
import { MemoryRegistry } from '../../src/routing/registry.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { sseEvents } from '../helpers/sse.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let dir: string;
beforeAll(() => {
  dir = models.make('life', { arch: 'llama', seed: 3 });
});
afterAll(() => models.cleanup());

const TOKEN = 'runner-lifecycle-credential-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };
const json = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...auth },
  body: JSON.stringify(body),
});

async function newRunner(extra: Partial<Parameters<typeof createRunner>[0]> = {}): Promise<Runner> {
  const r = await createRunner({
    modelDir: dir,
    backend: 'reference',
    blobs: new MemoryBlobStore(),
    id: 'r1',
    url: 'http://runner-1:8081',
    credential: { current: TOKEN },
    ...extra,
  });
  await r.start();
  return r;
}

describe('runner heartbeat', () => {
  it('reports load, free KV memory, resident artifacts and the model profile; expires after its TTL; leaves on stop', async () => {
    let now = 1_000_000;
    const registry = new MemoryRegistry(() => now);
    const r = await newRunner();
    try {
      const res = await r.app.fetch(
        new Request('http://x/v1/precompute', json({ chunks: [{ text: 'resident chunk' }] })),
      );
      const { artifacts } = (await res.json()) as { artifacts: { key: string }[] };
      // a long request holds KV memory while we look
      const ac = new AbortController();
      const gen = await r.app.fetch(
        new Request('http://x/v1/generate', {
          ...json({ question: 'hold on', maxTokens: 300, ignoreEos: true }),
          signal: ac.signal,
        }),
      );
      const events = sseEvents(gen);
      await events.next();
      const hb = heartbeatOf(r.core);
      expect(runnerHeartbeatSchema.parse(hb)).toEqual(hb);
      expect(hb).toMatchObject({
        id: 'r1',
        url: 'http://runner-1:8081',
        models: [r.core.engine.fingerprint],
      });
      expect(hb.load.running).toBe(1);
      const s = r.core.scheduler.stats();
      expect(hb.kvFreeBytes).toBe(s.kvBytesCapacity - s.kvBytesInUse);
      expect(hb.kvFreeBytes).toBeLessThan(s.kvBytesCapacity);
      expect(BloomFilter.fromJSON(hb.artifacts).has(artifacts[0].key)).toBe(true);
      // the model's profile rides along, the same object GET /v1/model answers
      const model = await (await r.app.fetch(new Request('http://x/v1/model', { headers: auth }))).json();
      expect(hb.model).toEqual(model);
      expect(hb.model?.fingerprint).toBe(r.core.engine.fingerprint);
      ac.abort();
      await events.return(undefined);

      const loop = startHeartbeat(r.core, registry, { intervalMs: 1000 });
      await loop.beat();
      expect((await registry.list()).map((x) => x.id)).toEqual(['r1']);
      // signed with the runner credential: a router holding it accepts the heartbeat, one without refuses it
      const [published] = await registry.list();
      expect(await heartbeatRefusal(published, { tokens: [TOKEN] }, published.sentAt)).toBeNull();
      expect(await heartbeatRefusal(published, { tokens: ['y'.repeat(40)] }, published.sentAt)).toMatch(
        /signature/,
      );
      now += 2999;
      expect(await registry.list()).toHaveLength(1);
      now += 2; // past 3 × interval without a beat: gone
      expect(await registry.list()).toHaveLength(0);
      await loop.beat();
      expect(await registry.list()).toHaveLength(1);
      await loop.stop();
      expect(await registry.list()).toHaveLength(0);
    } finally {
      await r.stop({ graceMs: 0 });
    }
  });
});

describe('graceful stop', () => {
  it('lets running requests finish within the grace period and refuses new work', async () => {
    const r = await newRunner();
    const res = await r.app.fetch(
      new Request('http://x/v1/generate', json({ question: 'short', maxTokens: 24, ignoreEos: true })),
    );
    const events = sseEvents(res);
    await events.next(); // streaming has begun
    const stopping = r.stop({ graceMs: 10_000 });
    expect((await r.app.fetch(new Request('http://x/readyz', { headers: auth }))).status).toBe(503);
    const refused = await r.app.fetch(new Request('http://x/v1/generate', json({ question: 'late' })));
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string; retryable: boolean } }).error).toMatchObject({
      code: 'unavailable',
      retryable: true,
    });
    let last: { event: string; data: unknown } | null = null;
    for await (const e of events) last = e;
    expect(last?.event).toBe('done');
    expect((last!.data as RunnerUsage).finishReason).toBe('length');
    expect((last!.data as RunnerUsage).completionTokens).toBe(24);
    await stopping;
    expect(r.core.scheduler.stats().kvBytesInUse).toBe(0);
  });

  it('ends what is still running after the grace period with reason shutdown', async () => {
    const r = await newRunner();
    const maxTokens = r.core.engine.maxContext - 16;
    const res = await r.app.fetch(
      new Request('http://x/v1/generate', json({ question: 'long', maxTokens, ignoreEos: true })),
    );
    const events = sseEvents(res);
    await events.next();
    await r.stop({ graceMs: 0 });
    let last: { event: string; data: unknown } | null = null;
    for await (const e of events) last = e;
    expect(last?.event).toBe('done');
    expect((last!.data as RunnerUsage).finishReason).toBe('shutdown');
    expect((last!.data as RunnerUsage).completionTokens).toBeLessThan(maxTokens);
    expect(r.core.scheduler.stats()).toMatchObject({ kvBytesInUse: 0, running: 0, waiting: 0 });
  });
});
