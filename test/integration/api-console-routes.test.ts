// What the web console reads beyond the resource routes, against real components (PGlite on the wire,
// in-process workers, a runner on a tiny model): a document's chunk count and artifact bytes, a cited
// chunk's text (GET /v1/chunks/:chunk), and the runners with their tier occupancy and hit rates
// (GET /v1/runners, from each runner's /metrics) — each checked against the database or the runner itself
// and against its documented schema.
import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withRunnerToken } from '../../contracts/runner-api.ts';
import { chunks, kvArtifacts } from '../../src/db/schema.ts';
import { Chunk, Document, RunnerList } from '../../src/routes/openapi-schemas.ts';
import { readExposition } from '../../src/routing/runner-stats.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { ADMIN_KEY, envelope } from '../helpers/api-harness.ts';

const TEXT = [
  'The quiet river crosses the old bridge near the town. Record KQWTX: 482913.',
  'The small boat follows the bright star over the sea. Record HMVZP: 730256.',
  'The red bird sings the long song in the garden by the wall. Record BRTNL: 119044.',
].join(' ');

describe('console routes: document stats, chunks, runners', () => {
  let h: AnswerHarness;
  let tenant: { id: string; key: string };
  let col: { collection: string; document: string };

  beforeAll(async () => {
    h = await startAnswerHarness();
    tenant = await h.tenant('console');
    col = await h.ingest(tenant.key, TEXT, 'records.txt');
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  it("a document's chunk count and artifact bytes are its chunks' and their ready artifacts'", async () => {
    const rows = await h.db.db.select().from(chunks).where(eq(chunks.documentId, col.document));
    const hashes = [...new Set(rows.map((r) => r.contentHash))];
    const arts = await h.db.db.select().from(kvArtifacts).where(inArray(kvArtifacts.chunkHash, hashes));
    const bytes = arts.filter((a) => a.status === 'ready').reduce((s, a) => s + Number(a.bytes), 0);
    expect(rows.length).toBeGreaterThan(1);
    expect(bytes).toBeGreaterThan(0);

    const one = await h.expectJson(
      200,
      'GET',
      `/v1/collections/${col.collection}/documents/${col.document}`,
      {
        key: tenant.key,
      },
    );
    expect(Document.parse(one)).toMatchObject({ chunk_count: rows.length, artifact_bytes: bytes });
    const list = await h.expectJson<{ data: unknown[] }>(
      200,
      'GET',
      `/v1/collections/${col.collection}/documents?status=ready`,
      { key: tenant.key },
    );
    expect(list.data.map((d) => Document.parse(d))).toMatchObject([
      { id: col.document, chunk_count: rows.length, artifact_bytes: bytes },
    ]);
    // a queued document has made nothing yet
    const fresh = await h.expectJson(201, 'POST', `/v1/collections/${col.collection}/documents`, {
      key: tenant.key,
      json: { text: 'Record ZZZZZ: 100001.', filename: 'later.txt' },
    });
    expect(fresh).toMatchObject({ chunk_count: 0, artifact_bytes: 0 });
  });

  it('GET /v1/chunks/:chunk gives the text a citation points at; nothing for others', async () => {
    const done = await h.expectJson<{ citations: { n: number; chunk_id: string }[] }>(
      200,
      'POST',
      '/v1/query',
      {
        key: tenant.key,
        json: {
          question: 'What is the value of record HMVZP?',
          collection_ids: [col.collection],
          max_tokens: 4,
          stream: false,
        },
      },
    );
    expect(done.citations.length).toBeGreaterThan(0);
    const first = done.citations[0];
    const [row] = await h.db.db.select().from(chunks).where(eq(chunks.id, first.chunk_id));
    const got = Chunk.parse(
      await h.expectJson(200, 'GET', `/v1/chunks/${first.chunk_id}`, { key: tenant.key }),
    );
    expect(got).toEqual({
      id: row.id,
      object: 'chunk',
      collection_id: col.collection,
      document_id: col.document,
      filename: 'records.txt',
      ordinal: row.ordinal,
      text: row.text,
      token_count: row.tokenCount,
    });

    const other = await h.tenant('someone-else');
    const theirs = await h.call('GET', `/v1/chunks/${first.chunk_id}`, { key: other.key });
    expect(theirs.status).toBe(404);
    expect((await envelope(theirs)).code).toBe('not_found');
    expect((await h.call('GET', `/v1/chunks/${crypto.randomUUID()}`, { key: tenant.key })).status).toBe(404);
    expect((await h.call('GET', '/v1/chunks/..%2F..%2Fetc', { key: tenant.key })).status).toBe(404);
    expect((await h.call('GET', `/v1/chunks/${first.chunk_id}`, { key: ADMIN_KEY })).status).toBe(403);
    expect((await h.call('GET', `/v1/chunks/${first.chunk_id}`, { key: null })).status).toBe(401);
  });

  it("GET /v1/runners reports each runner's model, load and tiers as its own /metrics says", async () => {
    expect((await h.call('GET', '/v1/runners', { key: null })).status).toBe(401);
    expect((await h.call('GET', '/v1/runners', { key: 'kvrag_wrong' })).status).toBe(401);

    const list = RunnerList.parse(await h.expectJson(200, 'GET', '/v1/runners', { key: tenant.key }));
    expect(list.data).toHaveLength(1);
    const r = list.data[0];
    expect(r).toMatchObject({
      id: 'in-process',
      models: [{ fingerprint: h.served.fingerprint, id: h.served.id }],
      heartbeat: null,
      metrics_error: null,
    });
    expect(r.url).toBeUndefined(); // a tenant key never sees where runners live
    const own = readExposition(
      await (
        await h.runner.app.request('/metrics', {
          headers: { authorization: `Bearer ${h.runner.core.credential.current}` },
        })
      ).text(),
    );
    const sample = (name: string, tier: string) =>
      own.find((s) => s.name === name && s.labels.tier === tier)?.value ?? Number.NaN;
    const tiers = r.metrics!.tiers;
    expect(tiers.map((t) => t.name).sort()).toEqual(['disk', 'engine', 'host', 'object']);
    for (const t of tiers) {
      // counters only grow between the API's scrape and ours
      expect(t.hits).toBeLessThanOrEqual(sample('kvrag_runner_tier_hits_total', t.name));
      expect(t.hits + t.misses).toBeGreaterThanOrEqual(0);
      if (t.hit_rate !== null) expect(t.hit_rate).toBeCloseTo(t.hits / (t.hits + t.misses), 12);
      expect(t.resident_bytes).toBe(sample('kvrag_runner_tier_resident_bytes', t.name));
      const cap = sample('kvrag_runner_tier_capacity_bytes', t.name);
      expect(t.capacity_bytes).toBe(Number.isFinite(cap) ? cap : null);
    }
    // the object store is unbounded; the host and disk tiers have the runner's configured capacities
    expect(tiers.find((t) => t.name === 'object')!.capacity_bytes).toBeNull();
    expect(tiers.find((t) => t.name === 'host')!.capacity_bytes).toBe(
      h.runner.core.store.stats().host.capacityBytes,
    );
    expect(r.metrics!.kv_bytes_capacity).toBe(h.runner.core.scheduler.stats().kvBytesCapacity);
    expect(r.metrics!.requests).toBeGreaterThan(0); // the query of the test before

    // another answer reads artifacts: the reads show in the tiers' counters at the next look
    const reads = (x: typeof tiers) => x.reduce((s, t) => s + t.hits + t.misses, 0);
    await h.expectJson(200, 'POST', '/v1/query', {
      key: tenant.key,
      json: {
        question: 'What is the value of record BRTNL?',
        collection_ids: [col.collection],
        max_tokens: 2,
        stream: false,
      },
    });
    // scrapes are shared for a second: the next look after that sees the new reads
    await expect
      .poll(
        async () => {
          const after = RunnerList.parse(await h.expectJson(200, 'GET', '/v1/runners', { key: tenant.key }));
          return [reads(after.data[0].metrics!.tiers) > reads(tiers), after.data[0].metrics!.requests];
        },
        { timeout: 5000, interval: 300 },
      )
      .toEqual([true, r.metrics!.requests + 1]);

    const admin = RunnerList.parse(await h.expectJson(200, 'GET', '/v1/runners', { key: ADMIN_KEY }));
    expect(admin.data[0].url).toBe('http://runner.local');
  });

  it('many looks within a second cost each runner one /metrics read; a runner that cannot be read says why', async () => {
    let scrapes = 0;
    const authed = withRunnerToken((r) => h.runner.app.fetch(r), h.runner.core.credential.current);
    const fetchRunner = (req: Request) => {
      if (new URL(req.url).pathname === '/metrics') scrapes++;
      return authed(req);
    };
    h.useSource({
      list: async () => [
        {
          id: 'counted',
          url: 'http://counted.local',
          models: [h.served.fingerprint],
          load: 0,
          holds: () => false,
          fetch: fetchRunner,
        },
        {
          id: 'mute',
          url: 'http://mute.local',
          models: [h.served.fingerprint],
          load: 0,
          holds: () => false,
          fetch: async () => new Response('down', { status: 503 }),
        },
      ],
    });
    const looks = await Promise.all(
      Array.from({ length: 5 }, () => h.expectJson(200, 'GET', '/v1/runners', { key: tenant.key })),
    );
    expect(scrapes).toBe(1);
    for (const l of looks) {
      const [counted, mute] = RunnerList.parse(l).data;
      expect(counted.metrics?.tiers.length).toBe(4);
      expect(mute).toMatchObject({ id: 'mute', metrics: null, metrics_error: 'metrics answered HTTP 503' });
    }
    await new Promise((res) => setTimeout(res, 1100));
    await h.expectJson(200, 'GET', '/v1/runners', { key: tenant.key });
    expect(scrapes).toBe(2);
  });
});
