// The JobQueue contract against BullMQ on a real redis-server, plus stalled-job recovery after a
// consumer process dies mid-job, and jobs surviving a Redis restart with persistence on.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import { openQueue } from '../../src/queue/open.ts';
import { jobQueueSuite, waitFor } from '../helpers/job-queue-suite.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';

jobQueueSuite('BullMQ', async () => {
  const redis = await startRedis();
  const queue = new BullMqJobQueue({
    url: redis.url,
    prefix: 'suite',
    lockDurationMs: 2000,
    stalledIntervalMs: 1000,
  });
  return {
    queue,
    async cleanup() {
      await queue.close();
      await redis.stop();
    },
  };
});

describe('BullMQ specifics', () => {
  let redis: RedisTestServer;
  beforeAll(async () => {
    redis = await startRedis({ aof: true });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('picks up a job again after its consumer process is killed mid-job (stalled)', async () => {
    const lockMs = 800;
    const child = spawn(
      process.execPath,
      [
        new URL('../helpers/bullmq-hung-consumer.ts', import.meta.url).pathname,
        redis.url,
        'stall',
        'work',
        String(lockMs),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const lines = createInterface({ input: child.stdout! });
    const seen: string[] = [];
    lines.on('line', (l) => seen.push(l));
    const exited = new Promise((r) => child.once('exit', r));
    const q = new BullMqJobQueue({
      url: redis.url,
      prefix: 'stall',
      lockDurationMs: lockMs,
      stalledIntervalMs: 300,
    });
    try {
      await waitFor(() => seen.includes('ready'), 'child consumer');
      await q.enqueue('work', { doc: 'd1' }, { jobId: 'stuck', attempts: 3 });
      await waitFor(() => seen.includes('started stuck'), 'child to start the job');
      child.kill('SIGKILL');
      await exited;
      expect((await q.getJob('work', 'stuck'))?.state).toBe('active'); // still held by the dead consumer's lock

      const runs: { data: unknown; attempt: number }[] = [];
      const killedAt = Date.now();
      const c = q.consume('work', async (data, ctx) => {
        runs.push({ data, attempt: ctx.attempt });
      });
      await waitFor(
        async () => (await q.getJob('work', 'stuck'))?.state === 'completed',
        'stalled job to be redone',
      );
      const recoveredMs = Date.now() - killedAt;
      expect(runs).toEqual([{ data: { doc: 'd1' }, attempt: 1 }]); // a stall is not a failed try
      expect(recoveredMs).toBeLessThan(8000); // lock expiry + a stalled check, with room for a busy machine
      await c.close();
    } finally {
      child.kill('SIGKILL');
      await q.close();
    }
  });

  it('keeps waiting jobs across a Redis restart (append-only file); the producer reconnects', async () => {
    const q = new BullMqJobQueue({ url: redis.url, prefix: 'restart' });
    try {
      await q.enqueue('persist', { n: 1 }, { jobId: 'kept' });
      await redis.restart();
      expect((await q.getJob('persist', 'kept'))?.state).toBe('waiting');
      const runs: unknown[] = [];
      const c = q.consume('persist', async (data) => {
        runs.push(data);
      });
      await waitFor(
        async () => (await q.getJob('persist', 'kept'))?.state === 'completed',
        'job after restart',
      );
      expect(runs).toEqual([{ n: 1 }]);
      await c.close();
    } finally {
      await q.close();
    }
  });

  it('a consumer resumes after a Redis crash, and closes within its lock duration while Redis is down', async () => {
    const lockMs = 1500;
    const q = new BullMqJobQueue({
      url: redis.url,
      prefix: 'crash',
      lockDurationMs: lockMs,
      stalledIntervalMs: 500,
    });
    try {
      const runs: number[] = [];
      const c = q.consume('crash', async (data: { n: number }) => {
        runs.push(data.n);
      });
      const done = (id: string) => async () => (await q.getJob('crash', id))?.state === 'completed';
      await q.enqueue('crash', { n: 1 }, { jobId: 'before' });
      await waitFor(done('before'), 'job before the crash');
      // a crash of a few seconds: the worker's blocking connection retries every ≤ 2 s meanwhile
      await redis.kill();
      await new Promise((r) => setTimeout(r, 4000));
      await redis.up();
      await q.enqueue('crash', { n: 2 }, { jobId: 'after' });
      await waitFor(done('after'), 'job after the crash');
      expect(runs).toEqual([1, 2]);
      // down again, the blocking connection between retries: BullMQ's own close would wait for ever
      await redis.kill();
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = performance.now();
      await c.close();
      expect(performance.now() - t0).toBeLessThan(lockMs + 5000);
    } finally {
      await redis.up();
      await q.close();
    }
  }, 60_000);

  it('openQueue picks BullMQ with a Redis URL and the in-process queue without', async () => {
    const dist = await openQueue(loadConfig({ KVRAG_REDIS_URL: redis.url }));
    const embedded = await openQueue(loadConfig({}));
    try {
      expect(dist).toBeInstanceOf(BullMqJobQueue);
      expect(embedded).toBeInstanceOf(MemoryJobQueue);
      const id = await dist.enqueue('open-check', { ok: true }, { jobId: 'open-1' });
      expect((await dist.getJob('open-check', id))?.data).toEqual({ ok: true });
    } finally {
      await dist.close();
      await embedded.close();
    }
  });
});
