// The transactional outbox and its relay against real components: PGlite served over the Postgres wire
// protocol (postgres.js, as in production) and BullMQ on redis-server. Every outbox row must become
// exactly one job run: with two relays at once, and after a relay dies between enqueue and commit.
import { eq, isNull, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type DbHandle } from '../../src/db/client.ts';
import { outbox } from '../../src/db/schema.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import type { GcJob } from '../../contracts/jobs.ts';
import { addToOutbox } from '../../src/queue/outbox.ts';
import { pruneDeliveredOutbox, relayOnce, startOutboxRelay } from '../../workers/outbox-relay.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';

const gc = (i: number) => ({ v: 1 as const, tenantId: 't1', collectionId: `c${i}`, blobKeys: [`b/${i}`] });

describe('outbox + relay (PGlite over the wire, BullMQ on redis-server)', () => {
  let pg: PgliteServer;
  let redis: RedisTestServer;
  let db: DbHandle;
  let prefixN = 0;
  const queues: BullMqJobQueue[] = [];
  const openQueue = (prefix: string) => {
    const q = new BullMqJobQueue({ url: redis.url, prefix });
    queues.push(q);
    return q;
  };

  beforeAll(async () => {
    [pg, redis] = await Promise.all([startPgliteServer(), startRedis()]);
    db = createPostgresDb(pg.url, TEST_POOL);
  });
  afterAll(async () => {
    await Promise.all(queues.map((q) => q.close()));
    await db?.close();
    await Promise.all([pg?.stop(), redis?.stop()]);
  });

  /** Empties the outbox between tests. */
  const reset = () => db.db.delete(outbox);
  const undelivered = async () =>
    (await db.db.select().from(outbox).where(isNull(outbox.deliveredAt))).length;

  /** Consumes `gc` on a fresh prefix and counts runs per job id. */
  const countRuns = (q: BullMqJobQueue) => {
    const runs = new Map<string, number>();
    const consumer = q.consume<GcJob>(
      'gc',
      async (_data, ctx) => {
        runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
      },
      { concurrency: 4 },
    );
    return { runs, consumer };
  };

  it('deletes delivered rows past the retention window; younger and undelivered rows stay', async () => {
    await reset();
    await db.db.transaction(async (tx) => {
      for (const i of [1, 2, 3])
        await addToOutbox(tx, { queue: 'gc', jobId: `gc-retained-${i}`, payload: gc(i) });
    });
    const q = openQueue(`retain${prefixN++}`);
    expect((await relayOnce(db.db, q)).delivered).toBe(3);
    // one delivered two days ago, one a minute ago; plus one never delivered, written long ago
    await db.db.execute(
      sql`update outbox set delivered_at = now() - interval '2 days' where job_id = 'gc-retained-1'`,
    );
    await db.db.execute(
      sql`update outbox set delivered_at = now() - interval '1 minute' where job_id = 'gc-retained-2'`,
    );
    await db.db.execute(
      sql`update outbox set delivered_at = null, created_at = now() - interval '9 days' where job_id = 'gc-retained-3'`,
    );
    expect(await pruneDeliveredOutbox(db.db, 24 * 3600_000, 1)).toBe(1);
    const left = (await db.db.select({ id: outbox.jobId }).from(outbox)).map((r) => r.id).sort();
    expect(left).toEqual(['gc-retained-2', 'gc-retained-3']);
    // the relay loop prunes on its own
    await db.db.execute(
      sql`update outbox set delivered_at = now() - interval '2 days' where job_id = 'gc-retained-2'`,
    );
    const loop = startOutboxRelay(db.db, q, { idleMs: 20, retentionMs: 24 * 3600_000 });
    try {
      await waitFor(async () => (await db.db.select().from(outbox)).length === 1, 'pruned by the loop');
    } finally {
      await loop.stop();
    }
    await reset();
  });

  it('writes outbox rows only with the transaction that carries them, once per job id', async () => {
    await reset();
    await db.db.transaction(async (tx) => {
      expect(await addToOutbox(tx, { queue: 'gc', jobId: 'gc-commit', payload: gc(1) })).toBe(true);
      expect(await addToOutbox(tx, { queue: 'gc', jobId: 'gc-commit', payload: gc(2) })).toBe(false);
    });
    await expect(
      db.db.transaction(async (tx) => {
        await addToOutbox(tx, { queue: 'gc', jobId: 'gc-rollback', payload: gc(3) });
        throw new Error('the state change failed');
      }),
    ).rejects.toThrow('the state change failed');
    // @ts-expect-error: a payload that breaks its contract is refused before it reaches the table
    await expect(addToOutbox(db.db, { queue: 'gc', jobId: 'gc-bad', payload: { v: 1 } })).rejects.toThrow();
    await expect(addToOutbox(db.db, { queue: 'gc', jobId: 'gc:colon', payload: gc(4) })).rejects.toThrow(
      /job id/,
    );
    const rows = await db.db.select().from(outbox);
    expect(rows.map((r) => [r.jobId, r.queue, (r.payload as GcJob).collectionId])).toEqual([
      ['gc-commit', 'gc', 'c1'],
    ]);
    expect(rows[0]).toMatchObject({ deliveredAt: null, attempts: 0, lastError: null });
  });

  it('delivers every row exactly once with two relays running concurrently', async () => {
    await reset();
    const rowCount = 60;
    await db.db.transaction(async (tx) => {
      for (let i = 0; i < rowCount; i++)
        await addToOutbox(tx, { queue: 'gc', jobId: `gc-conc-${i}`, payload: gc(i) });
    });
    const prefix = `relay${prefixN++}`;
    // Two relays: separate database connections and separate queue producers, as two processes would have.
    const db2 = createPostgresDb(pg.url, TEST_POOL);
    const [qa, qb] = [openQueue(prefix), openQueue(prefix)];
    const { runs, consumer } = countRuns(openQueue(prefix));
    const relayUntilEmpty = async (handle: DbHandle, q: BullMqJobQueue) => {
      let total = 0;
      for (;;) {
        const r = await relayOnce(handle.db, q, { batchSize: 7 });
        total += r.delivered;
        if (r.delivered === 0) return total;
      }
    };
    try {
      const [a, b] = await Promise.all([relayUntilEmpty(db, qa), relayUntilEmpty(db2, qb)]);
      expect(a + b).toBe(rowCount); // no row delivered by both
      expect(a).toBeGreaterThan(0);
      expect(b).toBeGreaterThan(0);
      expect(await undelivered()).toBe(0);
      await waitFor(async () => (await qa.counts('gc')).completed === rowCount, 'all jobs done');
      await new Promise((r) => setTimeout(r, 200)); // a duplicate, if any, would have run by now
      expect(runs.size).toBe(rowCount);
      expect([...runs.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await consumer.close();
      await db2.close();
    }
  });

  it('delivers exactly once after a relay crashes between enqueue and commit', async () => {
    await reset();
    await db.db.transaction(async (tx) => {
      for (let i = 0; i < 5; i++)
        await addToOutbox(tx, { queue: 'gc', jobId: `gc-crash-${i}`, payload: gc(i) });
    });
    const prefix = `relay${prefixN++}`;
    const q = openQueue(prefix);
    const crash = relayOnce(db.db, q, {
      beforeCommit: async (delivered) => {
        expect(delivered).toHaveLength(5); // enqueued, marked, not yet committed
        throw new Error('relay process died');
      },
    });
    await expect(crash).rejects.toThrow('relay process died');
    expect(await undelivered()).toBe(5); // the marks rolled back …
    expect((await q.counts('gc')).waiting).toBe(5); // … but the jobs are queued

    expect(await relayOnce(db.db, q)).toEqual({ delivered: 5, failed: 0, pending: 0 }); // the next pass re-enqueues
    expect(await undelivered()).toBe(0);
    expect((await q.counts('gc')).waiting).toBe(5); // deduped by job id
    const { runs, consumer } = countRuns(q);
    await waitFor(async () => (await q.counts('gc')).completed === 5, 'jobs done');
    await new Promise((r) => setTimeout(r, 200));
    expect([...runs.entries()].sort()).toEqual([0, 1, 2, 3, 4].map((i) => [`gc-crash-${i}`, 1]));
    await consumer.close();
  });

  it('records attempts and the error of a row that cannot be enqueued and keeps relaying the rest', async () => {
    await reset();
    await addToOutbox(db.db, { queue: 'gc', jobId: 'gc-fine', payload: gc(1) });
    // Written around addToOutbox's checks, as an older producer might have: BullMQ refuses the id.
    await db.db.insert(outbox).values({ queue: 'gc', jobId: 'gc:poison', payload: gc(2) });
    const q = openQueue(`relay${prefixN++}`);
    expect(await relayOnce(db.db, q)).toEqual({ delivered: 1, failed: 1, pending: 0 });
    expect(await relayOnce(db.db, q)).toEqual({ delivered: 0, failed: 1, pending: 0 });
    const [poison] = await db.db.select().from(outbox).where(eq(outbox.jobId, 'gc:poison'));
    expect(poison).toMatchObject({ deliveredAt: null, attempts: 2 });
    expect(poison.lastError).toMatch(/invalid job id/);
    const [fine] = await db.db.select().from(outbox).where(eq(outbox.jobId, 'gc-fine'));
    expect(fine.deliveredAt).toBeInstanceOf(Date);
    expect(fine.lastError).toBeNull();
  });

  it('keeps a row while Redis is down, recording the failures, and delivers it once Redis is back', async () => {
    await reset();
    const q = openQueue(`relay${prefixN++}`);
    const loop = startOutboxRelay(db.db, q, { idleMs: 50, errorMs: 50 });
    try {
      await addToOutbox(db.db, { queue: 'gc', jobId: 'gc-live-1', payload: gc(1) });
      await waitFor(async () => (await undelivered()) === 0, 'first row relayed');
      await redis.down();
      await addToOutbox(db.db, { queue: 'gc', jobId: 'gc-live-2', payload: gc(2) });
      const failing = await waitFor(
        async () => (await db.db.select().from(outbox).where(eq(outbox.jobId, 'gc-live-2')))[0]?.lastError,
        'a failed enqueue to be recorded',
        20_000,
      );
      expect(failing).toBeTruthy();
      expect(await undelivered()).toBe(1);
      await redis.up();
      await waitFor(async () => (await undelivered()) === 0, 'the row relayed after the outage', 30_000);
      expect((await q.getJob('gc', 'gc-live-2'))?.state).toBe('waiting');
      const [row] = await db.db.select().from(outbox).where(eq(outbox.jobId, 'gc-live-2'));
      expect(row.attempts).toBeGreaterThanOrEqual(2); // at least one failed try, then the delivery
      expect(row.lastError).toBeNull();
    } finally {
      await loop.stop();
    }
  });

  it('relays at once when poked instead of waiting out the idle pause', async () => {
    await reset();
    const q = openQueue(`relay${prefixN++}`);
    const loop = startOutboxRelay(db.db, q, { idleMs: 60_000 });
    try {
      await new Promise((r) => setTimeout(r, 200)); // the first (empty) pass is over: the loop is idle
      await addToOutbox(db.db, { queue: 'gc', jobId: 'gc-poked', payload: gc(1) });
      const t0 = Date.now();
      loop.poke();
      await waitFor(async () => (await undelivered()) === 0, 'poked relay', 5_000);
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect((await q.getJob('gc', 'gc-poked'))?.state).toBe('waiting');
    } finally {
      await loop.stop();
    }
  });

  it("with the in-process queue and markWhen 'finished', a job lost in a crash is queued again", async () => {
    await reset();
    await addToOutbox(db.db, { queue: 'gc', jobId: 'gc-embedded', payload: gc(1) });
    const before = new MemoryJobQueue();
    expect(await relayOnce(db.db, before, { markWhen: 'finished' })).toEqual({
      delivered: 0,
      failed: 0,
      pending: 1,
    });
    expect((await before.getJob('gc', 'gc-embedded'))?.state).toBe('waiting');
    expect(await relayOnce(db.db, before, { markWhen: 'finished' })).toMatchObject({ pending: 1 }); // deduped
    expect((await before.counts('gc')).waiting).toBe(1);
    await before.close(); // the process dies with the job unrun

    const after = new MemoryJobQueue(); // the restarted process
    expect(await relayOnce(db.db, after, { markWhen: 'finished' })).toMatchObject({
      delivered: 0,
      pending: 1,
    });
    const runs: string[] = [];
    after.consume('gc', async (_data, ctx) => {
      runs.push(ctx.id);
    });
    await waitFor(
      async () => (await after.getJob('gc', 'gc-embedded'))?.state === 'completed',
      'job after restart',
    );
    expect(await relayOnce(db.db, after, { markWhen: 'finished' })).toEqual({
      delivered: 1,
      failed: 0,
      pending: 0,
    });
    expect(await undelivered()).toBe(0);
    expect(runs).toEqual(['gc-embedded']);
    await after.close();
  });
});
