// Runner faults seen from the API: a runner whose connection dies in the middle of a generation (the client
// gets an `error` event with a retryable envelope; neither the API's in-flight count nor the runner's KV
// memory leaks), a runner gone before its first token (the query fails over to another runner), and a
// corrupted chunk artifact in the object store (detected, removed, and the chunk recomputed). The runner
// under test listens on real HTTP behind a TCP proxy that resets connections; the fallback runner is the
// harness's in-process one. (A runner killed mid-precompute: runner-precompute.test.ts.)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import { chunks, kvArtifacts } from '../../src/db/schema.ts';
import { inProcessSource, type RunnerSource, staticSource } from '../../src/routing/runner-client.ts';
import { withRunnerToken } from '../../contracts/runner-api.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { type TcpFaultProxy, tcpFaultProxy } from '../helpers/fault-proxy.ts';
import { collectSse, sseEvents } from '../helpers/sse.ts';

let h: AnswerHarness;
let remote: Runner;
let proxy: TcpFaultProxy;
let tmp: string;
let key: string;
let collection: string;
let document: string;

/**
 * The remote runner (through the proxy) first; with `fallback`, the in-process runner after it. Resolves
 * once the remote runner has been probed ready (so a cut armed afterwards hits the generation, not the probe).
 */
async function useRunners(fallback: boolean) {
  const primary = staticSource([`http://127.0.0.1:${proxy.port}`], {
    pollMs: 60_000,
    fetch: withRunnerToken((r) => fetch(r), remote.core.credential.current),
  });
  const second = inProcessSource(
    withRunnerToken((r) => h.runner.app.fetch(r), h.runner.core.credential.current),
    h.runner.core.engine.profile,
  );
  const source: RunnerSource = {
    // the fallback reports load, so the remote runner ranks first
    list: async () => [
      ...(await primary.list()),
      ...(fallback ? (await second.list()).map((r) => ({ ...r, load: 4 })) : []),
    ],
  };
  h.useSource(source);
  expect((await h.answer.runners.rank(h.served.fingerprint, []))[0].url).toBe(
    `http://127.0.0.1:${proxy.port}`,
  );
}

beforeAll(async () => {
  h = await startAnswerHarness();
  tmp = await mkdtemp(join(tmpdir(), 'kvrag-fault-runner-'));
  remote = await createRunner({
    modelDir: h.runner.core.engine.dir,
    backend: 'reference',
    blobs: h.blobs,
    kvDiskDir: join(tmp, 'kv'),
    dtype: 'f32',
    port: 0,
    host: '127.0.0.1',
  });
  const { port } = await remote.start();
  proxy = await tcpFaultProxy(port!);
  key = (await h.tenant('runner-faults')).key;
  ({ collection, document } = await h.ingest(
    key,
    'The beacon on the north tower is lit at dusk by the keeper. The south tower has no beacon.',
  ));
}, 90_000);
afterAll(async () => {
  await proxy?.close();
  await remote?.stop({ graceMs: 0 });
  await h?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const query = (question: string, maxTokens = 64) =>
  h.call('POST', '/v1/query', {
    key,
    json: { question, collection_ids: [collection], max_tokens: maxTokens, quality: 'fast', reuse: 'full' },
  });

async function waitIdle(r: Runner) {
  const until = Date.now() + 5000;
  while (r.core.scheduler.stats().running + r.core.scheduler.stats().waiting > 0) {
    if (Date.now() > until) throw new Error(`runner still busy: ${JSON.stringify(r.core.scheduler.stats())}`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

describe('a runner dying mid-generation', () => {
  it('the client gets an error event (retryable envelope) after its tokens; nothing leaks on either side', async () => {
    await useRunners(false);
    const cut = proxy.cutOnReply(/event: ?token/);
    const res = await query('Who lights the beacon on the north tower?', 256);
    expect(res.status).toBe(200);
    const events: { event: string; data: unknown }[] = [];
    for await (const e of sseEvents(res)) events.push(e);
    await cut;
    const names = events.map((e) => e.event);
    expect(names.slice(0, 2)).toEqual(['plan', 'citations']);
    expect(names.at(-1)).toBe('error');
    expect(names).not.toContain('done');
    const err = events.at(-1)!.data as { code: string; retryable: boolean; request_id: string };
    expect(err).toMatchObject({ code: 'upstream_unavailable', retryable: true });
    expect(err.request_id).toBe(res.headers.get('x-request-id'));
    // API side: no request still counted against the runner
    const [r] = await h.answer.runners.rank(h.served.fingerprint, []);
    expect(r.load).toBe(0);
    // runner side: the sequence was cancelled when its client went away, its KV memory given back
    await waitIdle(remote);
    expect(remote.core.scheduler.stats().kvBytesInUse).toBe(0);
  });

  it('a runner gone before its first token: the query fails over to the next runner and completes', async () => {
    await useRunners(true);
    const cut = proxy.cutOnReply(/./); // the first bytes of the reply (the SSE head) and nothing more
    const res = await query('Is there a beacon on the south tower?', 8);
    expect(res.status).toBe(200);
    const events = await collectSse(res);
    await cut;
    expect(events.at(-1)!.event).toBe('done');
    expect(JSON.stringify(events.at(-1)!.data)).toContain('in-process');
    await waitIdle(remote);
    expect(remote.core.scheduler.stats().kvBytesInUse).toBe(0);
  });

  it('the dead runner alone: a clear 502 envelope before any token, not a hang', async () => {
    await useRunners(false);
    proxy.cutOnReply(/./);
    const res = await h.call('POST', '/v1/query', {
      key,
      json: {
        question: 'Who lights the beacon?',
        collection_ids: [collection],
        max_tokens: 4,
        stream: false,
      },
    });
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { code: string; retryable: boolean } };
    expect(body.error).toMatchObject({ code: 'upstream_unavailable', retryable: true });
  });
});

describe('a corrupted chunk artifact', () => {
  it('is detected when loaded, removed from the store, recomputed, and the answer still comes', async () => {
    const rows = await h.db.db.select().from(chunks).where(eq(chunks.documentId, document));
    const [art] = await h.db.db
      .select()
      .from(kvArtifacts)
      .where(eq(kvArtifacts.chunkHash, rows[0].contentHash));
    const good = (await h.blobs.get(art.objectKey))!;
    const bad = good.slice();
    bad[Math.floor(bad.length / 2)] ^= 0xff; // one flipped byte in the middle of the K/V data
    await h.blobs.put(art.objectKey, bad);
    // a fresh runner (no artifact in memory or on its disk) has to read the object store
    const fresh = await createRunner({
      modelDir: h.runner.core.engine.dir,
      backend: 'reference',
      blobs: h.blobs,
      kvDiskDir: join(tmp, 'kv-fresh'),
      dtype: 'f32',
    });
    await fresh.start();
    try {
      h.useSource(
        inProcessSource(
          withRunnerToken((r) => fresh.app.fetch(r), fresh.core.credential.current),
          fresh.core.engine.profile,
          'fresh',
        ),
      );
      const res = await query('Who lights the beacon on the north tower?', 8);
      const events = await collectSse(res);
      expect(events.at(-1)!.event, JSON.stringify(events.at(-1))).toBe('done');
      // the corrupted object is not served again: it is gone or replaced by a valid one
      const now = await h.blobs.get(art.objectKey);
      expect(now === null || Buffer.compare(Buffer.from(now), Buffer.from(bad)) !== 0).toBe(true);
    } finally {
      await fresh.stop({ graceMs: 0 });
    }
  });
});
