// One behavioural suite for both JobQueue implementations (BullMQ on redis-server, in-process): delivery,
// retries with growing backoff, the failed set, UnrecoverableJobError, DeferJobError, job id dedupe,
// concurrency, delays and graceful close. Backoffs are tens of milliseconds so the suite stays fast.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobQueue } from '../../contracts/queue.ts';
import { DeferJobError, UnrecoverableJobError } from '../../contracts/queue.ts';

export interface QueueFixture {
  queue: JobQueue;
  cleanup(): Promise<void>;
}

/** Polls until check() returns a truthy value; throws with `what` after the timeout. */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function jobQueueSuite(name: string, open: () => Promise<QueueFixture>): void {
  describe(`JobQueue contract: ${name}`, () => {
    let fx: QueueFixture;
    let q: JobQueue;
    let n = 0;
    const fresh = () => `q${n++}-${Math.random().toString(36).slice(2, 8)}`;
    beforeAll(async () => {
      fx = await open();
      q = fx.queue;
    });
    afterAll(async () => {
      await fx?.cleanup();
    });

    it('delivers a job to a consumer and records it completed', async () => {
      const name = fresh();
      const seen: unknown[] = [];
      const id = await q.enqueue(name, { hello: 'world', n: 1 }, { jobId: 'job-a' });
      expect(id).toBe('job-a');
      expect((await q.getJob(name, 'job-a'))?.state).toMatch(/waiting|active/);
      const c = q.consume(name, async (data, ctx) => {
        seen.push({ data, id: ctx.id, attempt: ctx.attempt });
      });
      await waitFor(async () => (await q.getJob(name, 'job-a'))?.state === 'completed', 'completion');
      expect(seen).toEqual([{ data: { hello: 'world', n: 1 }, id: 'job-a', attempt: 1 }]);
      expect(await q.getJob(name, 'job-a')).toMatchObject({
        id: 'job-a',
        queue: name,
        state: 'completed',
        attemptsMade: 1,
      });
      expect(await q.getJob(name, 'nope')).toBeNull();
      expect((await q.counts(name)).completed).toBe(1);
      await c.close();
    });

    it('retries a failing job with exponential backoff (gaps grow) until it succeeds', async () => {
      const name = fresh();
      const times: number[] = [];
      const attempts: number[] = [];
      const c = q.consume(name, async (_data, ctx) => {
        times.push(Date.now());
        attempts.push(ctx.attempt);
        if (ctx.attempt < 4) throw new Error(`try ${ctx.attempt} fails`);
      });
      await q.enqueue(name, {}, { jobId: 'flaky', attempts: 5, backoffMs: 60 });
      await waitFor(async () => (await q.getJob(name, 'flaky'))?.state === 'completed', 'retried completion');
      expect(attempts).toEqual([1, 2, 3, 4]);
      const gaps = times.slice(1).map((t, i) => t - times[i]);
      // Exponential: 60, 120, 240 ms (each ≥ its delay, and each clearly longer than the one before).
      expect(gaps[0]).toBeGreaterThanOrEqual(55);
      expect(gaps[1]).toBeGreaterThanOrEqual(115);
      expect(gaps[2]).toBeGreaterThanOrEqual(235);
      expect(gaps[1]).toBeGreaterThan(gaps[0]);
      expect(gaps[2]).toBeGreaterThan(gaps[1]);
      expect((await q.getJob(name, 'flaky'))?.attemptsMade).toBe(4);
      await c.close();
    });

    it('moves a job that fails every try to the failed set after its attempts', async () => {
      const name = fresh();
      let calls = 0;
      const c = q.consume(name, async () => {
        calls++;
        throw new Error('always broken');
      });
      await q.enqueue(name, { x: 1 }, { jobId: 'doomed', attempts: 3, backoffMs: 10 });
      await waitFor(async () => (await q.getJob(name, 'doomed'))?.state === 'failed', 'failure');
      const job = await q.getJob(name, 'doomed');
      expect(job).toMatchObject({
        state: 'failed',
        attemptsMade: 3,
        failedReason: 'always broken',
        data: { x: 1 },
      });
      expect(calls).toBe(3);
      expect(await q.counts(name)).toMatchObject({
        failed: 1,
        completed: 0,
        waiting: 0,
        delayed: 0,
        active: 0,
      });
      await c.close();
    });

    it('puts a job back untried on DeferJobError, for another consumer to take', async () => {
      const name = fresh();
      let deferred = 0;
      const picky = q.consume(name, async () => {
        deferred++;
        throw new DeferJobError('not mine', 200);
      });
      await q.enqueue(name, { n: 1 }, { jobId: 'for-another', attempts: 1 });
      await waitFor(() => deferred > 0, 'the first consumer to take the job');
      await waitFor(async () => (await q.getJob(name, 'for-another'))?.state === 'delayed', 'deferral');
      expect(await q.getJob(name, 'for-another')).toMatchObject({ attemptsMade: 0 });
      // a consumer that can do it; its only try is still there
      const seen: unknown[] = [];
      const able = q.consume(name, async (data) => {
        seen.push(data);
      });
      await picky.close();
      await waitFor(async () => (await q.getJob(name, 'for-another'))?.state === 'completed', 'completion');
      expect(seen).toEqual([{ n: 1 }]);
      await able.close();
    });

    it('fails a job at once on UnrecoverableJobError', async () => {
      const name = fresh();
      let calls = 0;
      const c = q.consume(name, async () => {
        calls++;
        throw new UnrecoverableJobError('bad input, retrying cannot help');
      });
      await q.enqueue(name, {}, { jobId: 'hopeless', attempts: 5, backoffMs: 10 });
      await waitFor(async () => (await q.getJob(name, 'hopeless'))?.state === 'failed', 'failure');
      await sleep(100); // would have been retried by now
      expect(calls).toBe(1);
      expect(await q.getJob(name, 'hopeless')).toMatchObject({
        failedReason: 'bad input, retrying cannot help',
      });
      await c.close();
    });

    it('dedupes by job id while the job is kept, before and after it ran', async () => {
      const name = fresh();
      const runs: unknown[] = [];
      expect(await q.enqueue(name, { first: true }, { jobId: 'same' })).toBe('same');
      expect(await q.enqueue(name, { second: true }, { jobId: 'same' })).toBe('same');
      const c = q.consume(name, async (data) => {
        runs.push(data);
      });
      await waitFor(async () => (await q.getJob(name, 'same'))?.state === 'completed', 'completion');
      expect(await q.enqueue(name, { third: true }, { jobId: 'same' })).toBe('same');
      await q.enqueue(name, { other: true }, { jobId: 'different' });
      await waitFor(async () => (await q.getJob(name, 'different'))?.state === 'completed', 'second job');
      expect(runs).toEqual([{ first: true }, { other: true }]);
      const auto = await q.enqueue(name, {});
      expect(auto).not.toBe('same');
      await expect(q.enqueue(name, {}, { jobId: 'has:colon' })).rejects.toThrow(/invalid job id/);
      await expect(q.enqueue(name, {}, { jobId: '42' })).rejects.toThrow(/integer/);
      await c.close();
    });

    it('runs at most `concurrency` handlers at once', async () => {
      const name = fresh();
      let running = 0;
      let peak = 0;
      let done = 0;
      const c = q.consume(
        name,
        async () => {
          peak = Math.max(peak, ++running);
          await sleep(80);
          running--;
          done++;
        },
        { concurrency: 3 },
      );
      for (let i = 0; i < 7; i++) await q.enqueue(name, { i }, { jobId: `c-${i}` });
      await waitFor(() => done === 7, 'all jobs');
      expect(peak).toBe(3);
      await c.close();
    });

    it('holds a delayed job until its delay has passed', async () => {
      const name = fresh();
      let ranAt = 0;
      const c = q.consume(name, async () => {
        ranAt = Date.now();
      });
      await sleep(50); // let the consumer connect so the delay is what we measure
      const t0 = Date.now();
      await q.enqueue(name, {}, { jobId: 'later', delayMs: 300 });
      expect((await q.getJob(name, 'later'))?.state).toBe('delayed');
      await waitFor(() => ranAt > 0, 'delayed job');
      expect(ranAt - t0).toBeGreaterThanOrEqual(290);
      await c.close();
    });

    it('hands a job stopped by the shutdown signal back without spending a try', async () => {
      const name = fresh();
      let started = false;
      const first = q.consume(name, async (_data, ctx) => {
        started = true;
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
        throw new Error('stopped for shutdown');
      });
      await q.enqueue(name, { big: true }, { jobId: 'interrupted', attempts: 1 });
      await waitFor(() => started, 'handler start');
      await first.close();
      expect((await q.getJob(name, 'interrupted'))?.state).toMatch(/waiting|delayed/);
      const attempts: number[] = [];
      const second = q.consume(name, async (_data, ctx) => {
        attempts.push(ctx.attempt);
      });
      // With attempts: 1, a counted try would have failed the job for good.
      await waitFor(
        async () => (await q.getJob(name, 'interrupted'))?.state === 'completed',
        'redo after shutdown',
      );
      expect(attempts).toEqual([1]);
      await second.close();
    });

    it('a later try reads back the progress an earlier try saved', async () => {
      const name = fresh();
      const seen: unknown[] = [];
      const c = q.consume(name, async (_data, ctx) => {
        seen.push(ctx.progress);
        await ctx.saveProgress!({
          done: [...((ctx.progress as { done?: number[] })?.done ?? []), ctx.attempt],
        });
        if (ctx.attempt < 3) throw new Error(`try ${ctx.attempt} fails after saving`);
      });
      await q.enqueue(name, {}, { jobId: 'resumable', attempts: 3, backoffMs: 20 });
      await waitFor(async () => (await q.getJob(name, 'resumable'))?.state === 'completed', 'completion');
      expect(seen).toEqual([undefined, { done: [1] }, { done: [1, 2] }]);
      await c.close();
    });

    it('keeps only the redacted payload of a completed job; a failed one keeps its payload', async () => {
      const name = fresh();
      const redact = (d: unknown) => ({ kept: (d as { kept: string }).kept });
      const c = q.consume(
        name,
        async (data) => {
          if ((data as { fail?: boolean }).fail) throw new UnrecoverableJobError('no');
        },
        { redactOnComplete: redact },
      );
      await q.enqueue(name, { kept: 'id-1', secret: [1, 2, 3] }, { jobId: 'redacted' });
      await q.enqueue(name, { kept: 'id-2', secret: [4], fail: true }, { jobId: 'failed-kept' });
      await waitFor(async () => (await q.getJob(name, 'redacted'))?.state === 'completed', 'completion');
      await waitFor(async () => (await q.getJob(name, 'failed-kept'))?.state === 'failed', 'failure');
      expect((await q.getJob(name, 'redacted'))?.data).toEqual({ kept: 'id-1' });
      expect((await q.getJob(name, 'failed-kept'))?.data).toEqual({ kept: 'id-2', secret: [4], fail: true });
      await c.close();
    });

    it('closes gracefully: waits for the running handler, which sees the shutdown signal', async () => {
      const name = fresh();
      let started = false;
      let finished = false;
      let sawAbort = false;
      const c = q.consume(name, async (_data, ctx) => {
        started = true;
        await sleep(300);
        sawAbort = ctx.signal.aborted;
        finished = true;
      });
      await q.enqueue(name, {}, { jobId: 'long' });
      await waitFor(() => started, 'handler start');
      const t0 = Date.now();
      await c.close();
      expect(finished).toBe(true);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
      expect(sawAbort).toBe(true);
      expect((await q.getJob(name, 'long'))?.state).toBe('completed');
      // Jobs enqueued after the consumer closed wait for the next consumer.
      await q.enqueue(name, {}, { jobId: 'after-close' });
      await sleep(100);
      expect((await q.getJob(name, 'after-close'))?.state).toBe('waiting');
    });
  });
}
