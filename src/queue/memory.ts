// In-process JobQueue for embedded mode and unit tests, with BullMQ's semantics where they apply: job id
// dedupe while the job is kept, retries with exponential backoff, UnrecoverableJobError failing at once,
// DeferJobError putting the job back untried, a failed set, per-consumer concurrency, delayed jobs and
// graceful close. Jobs live in this process's
// memory only: a crash loses what was not yet done (embedded mode's trade-off; BullMQ keeps them).
import { randomUUID } from 'node:crypto';
import {
  backoffDelay,
  DEFAULT_ATTEMPTS,
  DEFAULT_BACKOFF_MS,
  validateJobId,
  validateQueueName,
} from './rules.ts';
import type {
  ConsumeOptions,
  Consumer,
  EnqueueOptions,
  JobContext,
  JobInfo,
  JobQueue,
  JobState,
} from '../../contracts/queue.ts';
import { DeferJobError, UnrecoverableJobError } from '../../contracts/queue.ts';

export interface MemoryQueueOptions {
  /** Completed jobs are kept (and their ids deduped) this long (default 24 h) … */
  keepCompletedMs?: number;
  /** … and at most this many per queue (default 10 000). */
  keepCompletedCount?: number;
  /** Failed jobs kept per queue (default 10 000), oldest dropped first. */
  keepFailedCount?: number;
}

interface MemJob {
  id: string;
  queue: string;
  data: unknown;
  state: JobState;
  attemptsMade: number;
  attempts: number;
  backoffMs: number;
  failedReason?: string;
  /** Saved by a try with ctx.saveProgress, read back by the next. */
  progress?: Record<string, unknown>;
  finishedAt?: number;
  /** Enqueue order, for FIFO among ready jobs. */
  seq: number;
  timer?: ReturnType<typeof setTimeout>;
}

type Handler = (data: unknown, ctx: JobContext) => Promise<unknown>;

interface MemConsumer {
  queue: string;
  handler: Handler;
  redact?: (data: unknown) => unknown;
  concurrency: number;
  running: Set<Promise<void>>;
  controller: AbortController;
  closed: boolean;
}

export class MemoryJobQueue implements JobQueue {
  private readonly jobs = new Map<string, Map<string, MemJob>>();
  private readonly consumers = new Set<MemConsumer>();
  private readonly opts: Required<MemoryQueueOptions>;
  private seq = 0;
  private closed = false;

  constructor(opts: MemoryQueueOptions = {}) {
    this.opts = {
      keepCompletedMs: opts.keepCompletedMs ?? 24 * 3600_000,
      keepCompletedCount: opts.keepCompletedCount ?? 10_000,
      keepFailedCount: opts.keepFailedCount ?? 10_000,
    };
  }

  private jobsOf(queue: string): Map<string, MemJob> {
    let m = this.jobs.get(queue);
    if (!m) this.jobs.set(queue, (m = new Map()));
    return m;
  }

  async enqueue<T>(queue: string, data: T, opts: EnqueueOptions = {}): Promise<string> {
    if (this.closed) throw new Error('queue is closed');
    validateQueueName(queue);
    const id = opts.jobId === undefined ? randomUUID() : validateJobId(opts.jobId);
    const jobs = this.jobsOf(queue);
    this.prune(jobs);
    if (jobs.has(id)) return id; // dedupe: the job exists (waiting, running, kept completed or failed)
    // Plain data only, as across Redis: a structured clone also detaches the job from the caller's object.
    const job: MemJob = {
      id,
      queue,
      data: structuredClone(data),
      state: 'waiting',
      attemptsMade: 0,
      attempts: Math.max(1, opts.attempts ?? DEFAULT_ATTEMPTS),
      backoffMs: opts.backoffMs ?? DEFAULT_BACKOFF_MS,
      seq: this.seq++,
    };
    jobs.set(id, job);
    if (opts.delayMs && opts.delayMs > 0) this.delay(job, opts.delayMs);
    else this.pump(queue);
    return id;
  }

  private delay(job: MemJob, ms: number): void {
    job.state = 'delayed';
    job.timer = setTimeout(() => {
      job.timer = undefined;
      job.state = 'waiting';
      this.pump(job.queue);
    }, ms);
  }

  consume<T>(
    queue: string,
    handler: (data: T, ctx: JobContext) => Promise<unknown>,
    opts: ConsumeOptions = {},
  ): Consumer {
    if (this.closed) throw new Error('queue is closed');
    validateQueueName(queue);
    const consumer: MemConsumer = {
      queue,
      handler: handler as Handler,
      redact: opts.redactOnComplete,
      concurrency: Math.max(1, opts.concurrency ?? 1),
      running: new Set(),
      controller: new AbortController(),
      closed: false,
    };
    this.consumers.add(consumer);
    queueMicrotask(() => this.pump(queue));
    return { close: () => this.closeConsumer(consumer) };
  }

  /**
   * Hands ready jobs to consumers with free slots, oldest first, one job per consumer in turn: consumers
   * of a queue share its jobs as competing BullMQ workers do (a job one of them deferred reaches another).
   */
  private pump(queue: string): void {
    for (;;) {
      let handed = false;
      for (const c of [...this.consumers]) {
        if (c.queue !== queue || c.closed || c.running.size >= c.concurrency) continue;
        const job = this.nextReady(queue);
        if (!job) return;
        this.run(c, job);
        // next time, the other consumers first
        this.consumers.delete(c);
        this.consumers.add(c);
        handed = true;
      }
      if (!handed) return;
    }
  }

  private nextReady(queue: string): MemJob | undefined {
    let best: MemJob | undefined;
    for (const j of this.jobsOf(queue).values()) {
      if (j.state === 'waiting' && (!best || j.seq < best.seq)) best = j;
    }
    return best;
  }

  private run(c: MemConsumer, job: MemJob): void {
    job.state = 'active';
    const ctx: JobContext = {
      id: job.id,
      attempt: job.attemptsMade + 1,
      signal: c.controller.signal,
      progress: job.progress === undefined ? undefined : structuredClone(job.progress),
      saveProgress: async (value) => {
        job.progress = structuredClone(value);
      },
    };
    const p = (async () => {
      try {
        // A fresh copy per try: a handler that mutates its input cannot change what a retry sees.
        await c.handler(structuredClone(job.data), ctx);
        if (c.redact) job.data = c.redact(job.data);
        this.finish(job, 'completed');
      } catch (err) {
        if (c.controller.signal.aborted) {
          job.state = 'waiting'; // stopped by a shutdown: not the job's fault, not a try
        } else if (err instanceof DeferJobError) {
          this.delay(job, err.delayMs); // for another consumer: not a try either
        } else {
          this.fail(job, err);
        }
      }
    })().finally(() => {
      c.running.delete(p);
      if (!this.closed) this.pump(c.queue);
    });
    c.running.add(p);
  }

  private finish(job: MemJob, state: 'completed' | 'failed', reason?: string): void {
    job.attemptsMade++;
    job.state = state;
    job.failedReason = reason;
    job.finishedAt = Date.now();
    this.prune(this.jobsOf(job.queue));
  }

  private fail(job: MemJob, err: unknown): void {
    const reason = err instanceof Error ? err.message : String(err);
    const unrecoverable =
      err instanceof UnrecoverableJobError || (err as Error)?.name === 'UnrecoverableJobError';
    if (unrecoverable || job.attemptsMade + 1 >= job.attempts) {
      this.finish(job, 'failed', reason);
      return;
    }
    job.attemptsMade++;
    job.failedReason = reason;
    this.delay(job, backoffDelay(job.backoffMs, job.attemptsMade));
  }

  /** Drops completed jobs past their age or count, and the oldest failed past the count. */
  private prune(jobs: Map<string, MemJob>): void {
    const now = Date.now();
    const done = [...jobs.values()].filter((j) => j.state === 'completed');
    const old = done.filter((j) => now - (j.finishedAt ?? now) > this.opts.keepCompletedMs);
    for (const j of old) jobs.delete(j.id);
    const keptDone = done.filter((j) => jobs.has(j.id)).sort((a, b) => a.finishedAt! - b.finishedAt!);
    for (const j of keptDone.slice(0, Math.max(0, keptDone.length - this.opts.keepCompletedCount)))
      jobs.delete(j.id);
    const failed = [...jobs.values()]
      .filter((j) => j.state === 'failed')
      .sort((a, b) => a.finishedAt! - b.finishedAt!);
    for (const j of failed.slice(0, Math.max(0, failed.length - this.opts.keepFailedCount)))
      jobs.delete(j.id);
  }

  async getJob<T = unknown>(queue: string, id: string): Promise<JobInfo<T> | null> {
    const j = this.jobs.get(queue)?.get(id);
    if (!j) return null;
    const info: JobInfo<T> = {
      id: j.id,
      queue,
      data: structuredClone(j.data) as T,
      state: j.state,
      attemptsMade: j.attemptsMade,
    };
    if (j.failedReason !== undefined) info.failedReason = j.failedReason;
    return info;
  }

  async counts(queue: string): Promise<Record<JobState, number>> {
    const out: Record<JobState, number> = { waiting: 0, delayed: 0, active: 0, completed: 0, failed: 0 };
    for (const j of this.jobs.get(queue)?.values() ?? []) out[j.state]++;
    return out;
  }

  /** Stops taking jobs for this consumer, signals its handlers and waits for them. */
  private async closeConsumer(c: MemConsumer): Promise<void> {
    c.closed = true;
    c.controller.abort();
    await Promise.allSettled([...c.running]);
    this.consumers.delete(c);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.consumers].map((c) => this.closeConsumer(c)));
    for (const jobs of this.jobs.values()) {
      for (const j of jobs.values()) if (j.timer) clearTimeout(j.timer);
    }
  }
}
