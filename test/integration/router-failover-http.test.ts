// Router failover through real HTTP runners: two runners (reference backend, the harness's tiny model, the
// harness's object store) listen on ports and publish their real heartbeats (heartbeatOf: load and a Bloom
// filter of resident artifacts) to the registry behind POST /v1/query. The runner holding the plan's
// artifacts is chosen over the idle cold one; when it fails before its first token — refusing new work
// (503, shutting down) or gone with its heartbeat still live — the other answers and the client's stream is
// the one it would have had (same events, same text, no error); once its heartbeat expires it is never
// called again.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heartbeatOf } from '../../gpu-runner/server/heartbeat-loop.ts';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import { kvArtifacts } from '../../src/db/schema.ts';
import { signHeartbeat } from '../../contracts/heartbeat.ts';
import { MemoryRegistry } from '../../src/routing/registry.ts';
import { withRunnerToken } from '../../contracts/runner-api.ts';
import { registrySource } from '../../src/routing/runner-client.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { collectSse } from '../helpers/sse.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';

const TEXT = Array.from(
  { length: 5 },
  (_, i) => `Beacon B${20 + i} blinks ${['red', 'green', 'blue', 'amber', 'white'][i]} at night.`,
).join('\n\n');
const TTL = 6_000;
/** The deployment's runner credential: both runners accept it and sign their heartbeats with it. */
const TOKEN = 'router-failover-runner-token-0123456789abcdef';

interface Done {
  text: string;
  finish_reason: string;
  cited: number[];
  usage: { completion_tokens: number; cached_tokens: number };
  runner: { id: string; failed_over: string[] };
}

describe('router failover over real HTTP runners', () => {
  let h: AnswerHarness;
  let models: TinyModels;
  let tenant: { id: string; key: string };
  let col: { collection: string };
  let clock = Date.now();
  const registry = new MemoryRegistry(() => clock);
  const runners = new Map<string, Runner>();
  const calls = new Map<string, number>();

  const beat = async (id: string) =>
    registry.publish(await signHeartbeat(heartbeatOf(runners.get(id)!.core), TOKEN), TTL);
  const ask = async (question: string) => {
    const res = await h.call('POST', '/v1/query', {
      key: tenant.key,
      json: { question, collection_ids: [col.collection], max_tokens: 8, quality: 'fast' },
    });
    expect(res.status).toBe(200);
    const events = await collectSse(res);
    return {
      names: events.map((e) => e.event),
      tokens: events.filter((e) => e.event === 'token').map((e) => (e.data as { text: string }).text),
      citations: events.find((e) => e.event === 'citations')?.data,
      done: events.at(-1)!.data as Done,
    };
  };

  beforeAll(async () => {
    h = await startAnswerHarness();
    h.answer.cache = undefined;
    models = tinyModels();
    tenant = await h.tenant('failover');
    col = await h.ingest(tenant.key, TEXT, 'beacons.txt');
    for (const id of ['holder', 'cold']) {
      const r = await createRunner({
        id,
        modelDir: models.make('m'),
        backend: 'reference',
        blobs: h.blobs,
        dtype: 'f32',
        port: 0,
        host: '127.0.0.1',
        credential: { current: TOKEN },
      });
      await r.start();
      runners.set(id, r);
    }
    expect(runners.get('holder')!.core.engine.fingerprint).toBe(h.served.fingerprint);
    // every call to a runner goes over the network; counted by runner port
    h.useSource(
      registrySource(
        registry,
        withRunnerToken((req) => {
          const id = [...runners].find(([, r]) => req.url.startsWith(r.core.url))?.[0] ?? req.url;
          calls.set(id, (calls.get(id) ?? 0) + 1);
          return fetch(req);
        }, TOKEN),
        { tokens: [TOKEN] },
      ),
    );
  }, 120_000);
  afterAll(async () => {
    for (const r of runners.values()) await r.stop({ graceMs: 0 }).catch(() => {});
    await h?.close();
    models?.cleanup();
  });

  it('the runner holding the artifacts answers; a failure before its first token is invisible', async () => {
    const question = 'Which beacon blinks blue at night?';
    // warm the holder: only it is registered, so it answers and loads the chunks' artifacts
    await beat('holder');
    const first = await ask(question);
    expect(first.done.runner).toEqual({ id: 'holder', failed_over: [] });
    await beat('holder');
    await beat('cold');
    // both idle; the holder's heartbeat now lists the artifacts, the cold runner's none
    const ranked = await h.answer.runners.rank(h.served.fingerprint, await artifactKeys());
    expect(ranked.map((r) => r.id)).toEqual(['holder', 'cold']);
    const baseline = await ask(question);
    expect(baseline.done.runner).toEqual({ id: 'holder', failed_over: [] });

    // 1. the holder refuses new work (shutting down: 503) before its first token
    runners.get('holder')!.core.ready = false;
    const refused = await ask(question);
    expect(refused.done.runner).toEqual({ id: 'cold', failed_over: ['holder'] });
    runners.get('holder')!.core.ready = true;

    // 2. the holder is gone, its last heartbeat still live
    await beat('holder');
    const last = (await registry.list()).find((x) => x.id === 'holder')!;
    await runners.get('holder')!.stop({ graceMs: 0 });
    await registry.publish(last, TTL);
    const before = calls.get('holder') ?? 0;
    const gone = await ask(question);
    expect(gone.done.runner).toEqual({ id: 'cold', failed_over: ['holder'] });
    expect(calls.get('holder')).toBe(before + 1);

    // the client saw the stream it would have seen from the holder: same events, tokens, text, sources
    for (const out of [refused, gone]) {
      expect(out.names).toEqual(baseline.names);
      expect(out.names).not.toContain('error');
      expect(out.tokens).toEqual(baseline.tokens);
      expect(out.citations).toEqual(baseline.citations);
      expect(out.done.text).toBe(baseline.done.text);
      expect(out.done.finish_reason).toBe(baseline.done.finish_reason);
      expect(out.done.cited).toEqual(baseline.done.cited);
      expect(out.done.usage.completion_tokens).toBe(baseline.done.usage.completion_tokens);
    }
    expect(baseline.tokens.length).toBeGreaterThan(0);

    // 3. its heartbeat expires: it is never called again, though it claimed every artifact
    clock += TTL + 1;
    await beat('cold');
    for (const q of [question, 'Which beacon blinks red at night?']) {
      expect((await ask(q)).done.runner).toEqual({ id: 'cold', failed_over: [] });
    }
    expect(calls.get('holder')).toBe(before + 1);
  }, 120_000);

  async function artifactKeys(): Promise<string[]> {
    const rows = await h.db.db
      .select()
      .from(kvArtifacts)
      .where(eq(kvArtifacts.modelFingerprint, h.served.fingerprint));
    return rows.map((a) => /([0-9a-f]{64})\.kv$/.exec(a.objectKey)![1]);
  }
});
