// The router behind POST /v1/query with runners from registry heartbeats: the runner holding the plan's
// artifacts is tried first; when it fails before its first token (nothing listens at its URL) the next one
// answers and the client sees one normal stream; a runner whose heartbeat expired is never called, even
// though it claimed every artifact.
import { createServer } from 'node:net';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvArtifacts } from '../../src/db/schema.ts';
import { BloomFilter } from '../../contracts/bloom.ts';
import { type RunnerHeartbeat, signHeartbeat } from '../../contracts/heartbeat.ts';
import { MemoryRegistry } from '../../src/routing/registry.ts';
import { withRunnerToken } from '../../contracts/runner-api.ts';
import { RunnerPool, registrySource } from '../../src/routing/runner-client.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { collectSse } from '../helpers/sse.ts';

const TEXT = Array.from(
  { length: 5 },
  (_, i) => `Station S${10 + i} logs ${['rain', 'snow', 'hail', 'fog', 'wind'][i]} daily.`,
).join('\n\n');

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('router: failover before the first token, expired heartbeats (real runner in-process)', () => {
  let h: AnswerHarness;
  let tenant: { id: string; key: string };
  let col: { collection: string };
  let keys: string[];
  let clock = Date.now();
  const registry = new MemoryRegistry(() => clock);
  const calls = new Map<string, number>();

  const unsigned = (id: string, url: string, held: string[], load = 0): RunnerHeartbeat => {
    const bloom = BloomFilter.forCapacity(64);
    for (const k of held) bloom.add(k);
    return {
      v: 1,
      id,
      url,
      models: [h.served.fingerprint],
      load: { running: load, waiting: 0, maxRunning: 8 },
      kvFreeBytes: 1 << 20,
      artifacts: bloom.toJSON(),
      sentAt: clock,
    };
  };
  // signed with the runner credential, as runners sign theirs
  const hb = (id: string, url: string, held: string[], load = 0) =>
    signHeartbeat(unsigned(id, url, held, load), h.runner.core.credential.current);
  const trust = () => ({ tokens: [h.runner.core.credential.current] });

  beforeAll(async () => {
    h = await startAnswerHarness();
    tenant = await h.tenant('router');
    col = await h.ingest(tenant.key, TEXT, 'stations.txt');
    keys = (
      await h.db.db.select().from(kvArtifacts).where(eq(kvArtifacts.modelFingerprint, h.served.fingerprint))
    ).map((a) => /([0-9a-f]{64})\.kv$/.exec(a.objectKey)![1]);
    // the in-process runner is reached at http://good.runner; every other URL through the network
    const fetchFn = (req: Request) => {
      const host = new URL(req.url).host;
      calls.set(host, (calls.get(host) ?? 0) + 1);
      return host === 'good.runner' ? h.runner.app.fetch(req) : fetch(req);
    };
    h.useSource(
      registrySource(registry, withRunnerToken(fetchFn, h.runner.core.credential.current), trust()),
    );
    h.answer.cache = undefined;
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  it('a runner failing before its first token is skipped invisibly; the next one answers', async () => {
    const dead = `127.0.0.1:${await closedPort()}`;
    await registry.publish(await hb('holder', `http://${dead}`, keys), 60_000);
    await registry.publish(await hb('good', 'http://good.runner', []), 60_000);
    const ranked = await h.answer.runners.rank(h.served.fingerprint, keys);
    expect(ranked.map((r) => r.id)).toEqual(['holder', 'good']);

    const res = await h.call('POST', '/v1/query', {
      key: tenant.key,
      json: { question: 'Which station logs hail?', collection_ids: [col.collection], max_tokens: 4 },
    });
    expect(res.status).toBe(200);
    const events = await collectSse(res);
    const names = events.map((e) => e.event);
    expect(names).not.toContain('error');
    expect(names[0]).toBe('plan');
    expect(names.at(-1)).toBe('done');
    const done = events.at(-1)!.data as {
      runner: { id: string; failed_over: string[] };
      usage: { completion_tokens: number; cached_tokens: number };
    };
    expect(done.runner).toEqual({ id: 'good', failed_over: ['holder'] });
    expect(done.usage.completion_tokens).toBeGreaterThan(0);
    expect(calls.get(dead)).toBe(1);
    await registry.remove('holder');
  }, 60_000);

  it('every runner failing before the first token ends the stream with one error event', async () => {
    await registry.remove('good');
    await registry.publish(await hb('dead', `http://127.0.0.1:${await closedPort()}`, keys), 60_000);
    const res = await h.call('POST', '/v1/query', {
      key: tenant.key,
      json: { question: 'Which station logs fog?', collection_ids: [col.collection], max_tokens: 4 },
    });
    const events = await collectSse(res);
    expect(events.map((e) => e.event)).toEqual(['plan', 'citations', 'error']);
    expect((events[2].data as { code: string }).code).toBe('upstream_unavailable');
    // non-streaming: the envelope with 502
    const plain = await h.call('POST', '/v1/query', {
      key: tenant.key,
      json: {
        question: 'Which station logs fog?',
        collection_ids: [col.collection],
        max_tokens: 4,
        stream: false,
      },
    });
    expect(plain.status).toBe(502);
    await registry.remove('dead');
  }, 60_000);

  it('a runner whose heartbeat expired is never called, though it claimed every artifact', async () => {
    await registry.publish(await hb('ghost', 'http://ghost.runner', keys), 1_000);
    await registry.publish(await hb('good', 'http://good.runner', []), 60_000);
    expect((await h.answer.runners.rank(h.served.fingerprint, keys))[0].id).toBe('ghost');
    clock += 1_500; // the ghost stopped heartbeating; its TTL ran out
    for (const q of ['Which station logs rain?', 'Which station logs snow?']) {
      const out = await h.expectJson<{ runner: { id: string; failed_over: string[] } }>(
        200,
        'POST',
        '/v1/query',
        {
          key: tenant.key,
          json: { question: q, collection_ids: [col.collection], max_tokens: 3, stream: false },
        },
      );
      expect(out.runner).toEqual({ id: 'good', failed_over: [] });
    }
    expect(calls.get('ghost.runner') ?? 0).toBe(0);
    expect((await h.answer.runners.rank(h.served.fingerprint, keys)).map((r) => r.id)).toEqual(['good']);
  }, 60_000);

  it('forged heartbeats are never used: unsigned, signed with another credential, stale, or off the allow-list', async () => {
    // each claims every artifact and no load, so it would be ranked first if the router believed it
    const forged: RunnerHeartbeat[] = [
      unsigned('unsigned', 'http://evil.example:8081', keys),
      await signHeartbeat(unsigned('other-key', 'http://evil.example:8081', keys), 'x'.repeat(64)),
      // a real signature over one URL, with the URL swapped afterwards
      { ...(await hb('swapped', 'http://good.runner', keys)), url: 'http://evil.example:8081' },
      { ...unsigned('stale', 'http://good.runner', keys), sentAt: clock - 120_000 },
    ];
    forged[3] = await signHeartbeat(forged[3], h.runner.core.credential.current);
    for (const f of forged) await registry.publish(f, 60_000);
    await registry.publish(await hb('good', 'http://good.runner', []), 60_000);
    const refused: string[] = [];
    const pool = new RunnerPool(
      registrySource(
        registry,
        (r) => fetch(r),
        trust(),
        (id, _url, reason) => refused.push(`${id}: ${reason}`),
      ),
    );
    expect((await pool.rank(h.served.fingerprint, keys)).map((r) => r.id)).toEqual(['good']);
    expect(refused.map((r) => r.split(':')[0]).sort()).toEqual(['other-key', 'stale', 'swapped', 'unsigned']);
    // with an allow-list, a correctly signed heartbeat on another origin is refused as well
    await registry.publish(await hb('signed-elsewhere', 'http://10.9.9.9:8081', keys), 60_000);
    const listed = new RunnerPool(
      registrySource(registry, (r) => fetch(r), {
        ...trust(),
        allow: ['http://good.runner', 'http://10.0.*.*:8081'],
      }),
    );
    expect((await listed.rank(h.served.fingerprint, keys)).map((r) => r.id)).toEqual(['good']);
    for (const id of ['unsigned', 'other-key', 'swapped', 'stale', 'signed-elsewhere'])
      await registry.remove(id);
  });

  it('bounded load: a holder far above the average load is passed over for an idle runner', async () => {
    const pool = new RunnerPool(registrySource(registry, (r) => fetch(r), trust()));
    await registry.publish(await hb('busy-holder', 'http://busy.runner', keys, 10), 60_000);
    const ranked = await pool.rank(h.served.fingerprint, keys);
    expect(ranked.map((r) => r.id)).toEqual(['good', 'busy-holder']);
    await registry.remove('busy-holder');
  });
});
