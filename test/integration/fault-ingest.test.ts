// Faults during ingest on the real distributed components: Postgres (PGlite over the wire, behind a TCP
// proxy that can cut connections), BullMQ on redis-server (append-only file, restarted), s3rver (behind an
// HTTP proxy that injects errors and stalls), the in-process workers and a runner consuming `precompute`.
// Every test ends with the same invariant: every document the API accepted (201) reaches `ready` with its
// chunk artifacts, every outbox job is delivered, and nothing is half-written — no lost document, no lost job.
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.ts';
import { chunks, documents, kvArtifacts, outbox } from '../../src/db/schema.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import { S3BlobStore } from '../../src/storage/s3.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { envelope } from '../helpers/api-harness.ts';
import {
  type HttpFaultProxy,
  httpFaultProxy,
  type TcpFaultProxy,
  tcpFaultProxy,
} from '../helpers/fault-proxy.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';
import { type S3TestServer, startS3 } from '../helpers/s3-server.ts';

let redis: RedisTestServer;
let s3: S3TestServer;
let s3proxy: HttpFaultProxy;
let pgproxy: TcpFaultProxy;
let blobs: S3BlobStore;
let queue: BullMqJobQueue;
let h: AnswerHarness;
let key: string;
let collection: string;
/** Every document id the API accepted. */
const accepted: string[] = [];

beforeAll(async () => {
  [redis, s3] = await Promise.all([startRedis({ aof: true }), startS3()]);
  s3proxy = await httpFaultProxy(s3.endpoint);
  // short timeouts and two tries, so a stalled store fails in a few seconds
  blobs = new S3BlobStore({
    ...s3,
    endpoint: s3proxy.url,
    forcePathStyle: true,
    maxAttempts: 2,
    idleTimeoutMs: 1500,
  });
  // short locks: a job whose completion was lost with the Redis restart is found stalled within seconds
  queue = new BullMqJobQueue({
    url: redis.url,
    prefix: 'fault-ingest',
    lockDurationMs: 3000,
    stalledIntervalMs: 1000,
  });
  h = await startAnswerHarness({
    queue,
    blobs,
    api: {
      // statement text on every request (no prepared-statement reuse), so the proxy can see COMMIT
      pool: { max: 2, prepare: false },
      dbVia: async (url) => {
        const u = new URL(url);
        pgproxy = await tcpFaultProxy(Number(u.port));
        u.port = String(pgproxy.port);
        return u.toString();
      },
    },
  });
  key = (await h.tenant('faults')).key;
  collection = (
    await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
      key,
      json: { name: 'faults', chunking: { size: 64, overlap: 0 } },
    })
  ).id;
}, 120_000);
afterAll(async () => {
  await h?.close();
  await blobs?.close();
  await s3proxy?.close();
  await pgproxy?.close();
  await Promise.all([redis?.stop(), s3?.stop()]);
});

let n = 0;
const text = (what: string) =>
  `Record ${++n} (${what}): the gate code of depot ${n} is ${1000 + n * 37}. ` +
  'It is changed every spring by the quartermaster, who keeps the only written copy in the safe.';

async function upload(what: string): Promise<Response> {
  const res = await h.call('POST', `/v1/collections/${collection}/documents`, {
    key,
    json: { text: text(what), filename: `${what}.txt` },
  });
  if (res.status === 201) {
    const doc = (await res.clone().json()) as { id: string };
    accepted.push(doc.id);
  }
  return res;
}

/** No accepted document and no job lost: all ready with artifacts, every outbox row delivered. */
async function expectNothingLost(timeoutMs = 45_000) {
  const statuses = async () =>
    JSON.stringify(
      await h.db.db
        .select({ id: documents.id, status: documents.status })
        .from(documents)
        .where(inArray(documents.id, accepted)),
    );
  await waitFor(
    async () => {
      const rows = await h.db.db
        .select({ id: documents.id, status: documents.status, error: documents.error })
        .from(documents)
        .where(inArray(documents.id, accepted));
      const failed = rows.find((r) => r.status === 'failed');
      if (failed) throw new Error(`document ${failed.id} failed: ${failed.error}`);
      return rows.length === accepted.length && rows.every((r) => r.status === 'ready');
    },
    `${accepted.length} accepted documents to be ready`,
    timeoutMs,
  ).catch(async (e) => {
    const jobs = {
      outbox: await h.db.db.select().from(outbox).where(isNull(outbox.deliveredAt)),
      ingest: await queue.counts('ingest'),
      precompute: await queue.counts('precompute'),
      done: await queue.counts('precompute-done'),
    };
    throw new Error(`${(e as Error).message}: ${await statuses()} ${JSON.stringify(jobs)}`);
  });
  const pending = await h.db.db.select().from(outbox).where(isNull(outbox.deliveredAt));
  expect(pending).toEqual([]);
  const cs = await h.db.db.select().from(chunks).where(inArray(chunks.documentId, accepted));
  const hashes = [...new Set(cs.map((c) => c.contentHash))];
  const arts = await h.db.db
    .select()
    .from(kvArtifacts)
    .where(and(inArray(kvArtifacts.chunkHash, hashes), eq(kvArtifacts.status, 'ready')));
  expect(new Set(arts.map((a) => a.chunkHash)).size).toBe(hashes.length);
  // each artifact object is in the store
  for (const a of arts) expect(await blobs.head(a.objectKey), a.objectKey).not.toBeNull();
  // chunks written once per document (a retried ingest replaces, never duplicates)
  const [dups] = await queryRows<{ n: number }>(
    h.db.db,
    sql`select count(*)::int as n from (select document_id, ordinal from chunks group by 1, 2 having count(*) > 1) d`,
  );
  expect(Number(dups.n)).toBe(0);
}

describe('Redis restarted mid-ingest', () => {
  it('documents being ingested when Redis restarts all reach ready; no job is lost', async () => {
    for (let i = 0; i < 3; i++) expect((await upload(`redis-${i}`)).status).toBe(201);
    // restart while the pipeline is busy: some documents past queued, not all ready
    await waitFor(async () => {
      const rows = await h.db.db
        .select({ status: documents.status })
        .from(documents)
        .where(inArray(documents.id, accepted));
      return rows.some((r) => r.status !== 'queued');
    }, 'ingest to start');
    await redis.restart();
    // and uploads during the outage window right after are accepted and kept
    expect((await upload('after-restart')).status).toBe(201);
    await expectNothingLost();
  });
});

describe('object store errors and timeouts', () => {
  it('a few 503s are retried by the client: the upload is accepted', async () => {
    const before = s3proxy.stats().injected;
    s3proxy.failNext(1, 503);
    expect((await upload('s3-retried')).status).toBe(201);
    expect(s3proxy.stats().injected).toBe(before + 1);
    await expectNothingLost();
  });

  it('a store that keeps failing: 502 upstream_unavailable, retryable, nothing written; the retry later succeeds', async () => {
    const before = await h.snapshot();
    s3proxy.failNext(1000, 500);
    const res = await upload('s3-down');
    s3proxy.failNext(0);
    expect(res.status).toBe(502);
    const body = (await res.clone().json()) as { error: { retryable: boolean } };
    expect(body.error.retryable).toBe(true);
    expect((await envelope(res)).message).toMatch(/object store put of "uploads\/.+" failed \(.*HTTP 500/);
    const after = await h.snapshot();
    expect(after.rows).toEqual(before.rows);
    n--; // the same document again
    expect((await upload('s3-down')).status).toBe(201);
    await expectNothingLost();
  });

  it('a stalled store times out (504, retryable) instead of hanging the request', async () => {
    const before = await h.snapshot();
    s3proxy.stall(true);
    const t0 = Date.now();
    const res = await upload('s3-stalled');
    s3proxy.stall(false);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect([502, 504]).toContain(res.status);
    expect((await envelope(res)).code).toMatch(/timeout|upstream_unavailable/);
    expect((await h.snapshot()).rows).toEqual(before.rows);
  });

  it('errors while workers and the runner read and write the store: jobs retry, documents reach ready', async () => {
    const res = await upload('s3-during-ingest');
    expect(res.status).toBe(201);
    // the next reads of the upload and writes of artifacts fail (beyond the client's own retries)
    s3proxy.failNext(3, 500);
    await expectNothingLost();
    expect(s3proxy.stats().injected).toBeGreaterThan(0);
  });
});

// The connection is cut as the client sends COMMIT: the transaction's rows reached the server but are
// never committed. (Cutting it before COMMIT would hit a postgres.js 3.4.9 bug: its automatic ROLLBACK on
// the dead connection throws from a setImmediate and kills the process — porsager/postgres#1208.)
describe('Postgres connection dropped', () => {
  it('at COMMIT of the upload transaction: a 5xx envelope, no half-written document; the retry is accepted', async () => {
    const before = await h.snapshot();
    // the API's own transaction: the connection that inserted the documents row, at its COMMIT
    const cut = pgproxy.cutOn(/\bcommit\b/i, /insert into "documents"/i);
    const res = await upload('pg-cut');
    await cut;
    expect(res.status).toBeGreaterThanOrEqual(500);
    await envelope(res);
    const after = await h.snapshot();
    // the documents row of the cut transaction was rolled back with it
    expect(after.rows.documents).toBe(before.rows.documents);
    expect(after.rows.outbox).toBe(before.rows.outbox);
    // and the upload's blob was removed again
    expect(after.blobs).toEqual(before.blobs);
    n--;
    expect((await upload('pg-cut')).status).toBe(201);
    await expectNothingLost();
  });

  it('at the next COMMIT of the pipeline (relay, ingest or precompute-done): retried, the document is ready once', async () => {
    expect((await upload('pg-cut-ingest')).status).toBe(201);
    await pgproxy.cutOn(/\bcommit\b/i);
    await expectNothingLost();
  });
});
