// Outages longer than the queue's retries, on the real distributed components: Postgres (PGlite over the
// wire, behind a TCP proxy that takes it away), BullMQ on redis-server (append-only file fsynced once a
// second, as Redis ships, killed with SIGKILL and its file cut back to a second earlier, as a machine
// crash leaves it), a filesystem object store, the in-process workers with
// the reconciler, and a runner consuming `precompute`. Jobs get two quick tries, so an outage of a few
// seconds outlasts them: what is left in queued…precomputing is re-driven by the reconciler once the
// component is back. Every accepted document reaches `ready` with its artifacts; none is failed or lost.
import { inArray, isNull } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documents, kvArtifacts, outbox } from '../../src/db/schema.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { type TcpFaultProxy, tcpFaultProxy } from '../helpers/fault-proxy.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';

let redis: RedisTestServer;
let pgproxy: TcpFaultProxy;
let queue: BullMqJobQueue;
let h: AnswerHarness;
let key: string;
let collection: string;
const accepted: string[] = [];

beforeAll(async () => {
  redis = await startRedis({ aof: 'everysec' });
  queue = new BullMqJobQueue({
    url: redis.url,
    prefix: 'fault-reconcile',
    lockDurationMs: 3000,
    stalledIntervalMs: 1000,
  });
  h = await startAnswerHarness({
    queue,
    api: {
      dbVia: async (url) => {
        const u = new URL(url);
        pgproxy = await tcpFaultProxy(Number(u.port));
        u.port = String(pgproxy.port);
        return u.toString();
      },
    },
    workers: {
      // two tries 100 ms apart: the retry budget is well under the outages below
      relay: { idleMs: 20, errorMs: 200, optionsFor: () => ({ attempts: 2, backoffMs: 100 }) },
      reconcile: { afterMs: 1500, everyMs: 300, attempts: 5 },
    },
  });
  key = (await h.tenant('outages')).key;
  collection = (
    await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
      key,
      json: { name: 'outages', chunking: { size: 64, overlap: 0 } },
    })
  ).id;
}, 120_000);
afterAll(async () => {
  pgproxy?.up();
  await h?.close();
  await pgproxy?.close();
  await redis?.stop();
});

let n = 0;
async function upload(what: string): Promise<void> {
  const text =
    `Record ${++n} (${what}): the gate code of depot ${n} is ${1000 + n * 37}. ` +
    'It is changed every spring by the quartermaster, who keeps the only written copy in the safe.';
  const doc = await h.expectJson<{ id: string }>(201, 'POST', `/v1/collections/${collection}/documents`, {
    key,
    json: { text, filename: `${what}.txt` },
  });
  accepted.push(doc.id);
}

const statuses = () =>
  h.db.db.select({ id: documents.id, status: documents.status, error: documents.error }).from(documents);

/** Every accepted document ready, with an artifact per distinct chunk; no outbox row left behind. */
async function expectAllReady(timeoutMs = 45_000): Promise<void> {
  await waitFor(
    async () => {
      const rows = (await statuses()).filter((r) => accepted.includes(r.id));
      const failed = rows.find((r) => r.status === 'failed');
      if (failed) throw new Error(`document ${failed.id} failed: ${failed.error}`);
      return rows.length === accepted.length && rows.every((r) => r.status === 'ready');
    },
    'every accepted document to be ready',
    timeoutMs,
  ).catch(async (e) => {
    throw new Error(`${(e as Error).message}: ${JSON.stringify(await statuses())}`);
  });
  expect(await h.db.db.select().from(outbox).where(isNull(outbox.deliveredAt))).toEqual([]);
  const arts = await h.db.db.select().from(kvArtifacts);
  for (const a of arts) expect(await h.blobs.head(a.objectKey), a.objectKey).not.toBeNull();
  const docs = await h.db.db.select().from(documents).where(inArray(documents.id, accepted));
  expect(docs.every((d) => d.status === 'ready')).toBe(true);
}

/** Until some accepted document is past `queued` (the pipeline is busy) — or all are ready. */
const busy = () =>
  waitFor(async () => {
    const rows = (await statuses()).filter((r) => accepted.includes(r.id));
    return rows.some((r) => r.status !== 'queued');
  }, 'ingest to start');

describe('outages longer than the retry budget', () => {
  it('Postgres away for seconds, then back: every document reaches ready', async () => {
    for (let i = 0; i < 3; i++) await upload(`pg-${i}`);
    await busy();
    pgproxy.down();
    // ingest, precompute-done and relay passes all fail meanwhile; the jobs' two tries are spent
    await new Promise((r) => setTimeout(r, 3000));
    pgproxy.up();
    await expectAllReady();
  });

  it('Redis killed with SIGKILL, losing its last second of acknowledged writes: every document reaches ready', async () => {
    for (let i = 0; i < 3; i++) await upload(`redis-${i}`);
    await busy();
    // what `appendfsync everysec` has on disk when the machine dies: the file as of up to a second ago —
    // jobs enqueued (and acknowledged, their outbox rows marked delivered) or completed since are gone
    const synced = redis.aofBytes();
    await new Promise((r) => setTimeout(r, 700));
    expect(redis.aofBytes()).toBeGreaterThan(synced);
    await redis.kill({ truncateAofTo: synced });
    await redis.up();
    await expectAllReady();
  });
});
