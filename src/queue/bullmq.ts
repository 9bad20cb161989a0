// JobQueue on BullMQ (distributed mode). One BullMQ Queue (producer) per queue name, one Worker per
// consume() call. What BullMQ gives and how it is set:
// - retries: `attempts` tries with exponential backoff from `backoffMs`;
// - dedupe: `jobId` — BullMQ ignores an add whose id exists, which only holds while the job is kept, so
//   completed jobs are kept for a while (age/count) and failed ones kept in the failed set;
// - stalled jobs: a worker renews its job's lock every lockDuration/2; a job whose lock lapsed (worker
//   crashed or its event loop was blocked) is moved back to wait by any worker's stalled check every
//   stalledInterval, up to maxStalledCount times, then failed. CPU-heavy handlers must yield or the lock
//   lapses under them;
// - UnrecoverableJobError → BullMQ UnrecoverableError: failed at once, no retries;
// - DeferJobError → moved to delayed for its delay without spending a try (BullMQ DelayedError);
// - close(): workers first (each waits for its running handlers, at most one lock duration), then
//   producers;
// - reconnects: a worker's connections retry 250 ms doubling to 2 s (BullMQ's default grows to 20 s). A
//   worker closed while its blocking connection waits out a retry never finishes closing — the `end`
//   event it waits for does not come (BullMQ #4656) — so a worker's close is bounded by its lock
//   duration: by then any job it held is another worker's to take (stalled check) anyway.
import { DelayedError, type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Log } from '../../contracts/log.ts';
import { DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_MS, validateJobId, validateQueueName } from './rules.ts';
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

export interface BullMqQueueOptions {
  /** redis:// or rediss:// URL. */
  url: string;
  /** Redis key prefix (default "kvrag"); tests use a fresh one for isolation. */
  prefix?: string;
  /** How long a job's lock lasts without renewal (default 30 s). */
  lockDurationMs?: number;
  /** How often workers look for stalled jobs (default 30 s). */
  stalledIntervalMs?: number;
  /** Times a job may stall before it is failed (default 1). */
  maxStalledCount?: number;
  /** Completed jobs kept (and their ids deduped) this long (default 24 h) … */
  keepCompletedSec?: number;
  /** … and at most this many per queue (default 10 000). */
  keepCompletedCount?: number;
  /** Failed jobs kept this long (default 7 days). */
  keepFailedSec?: number;
  log?: Log;
}

/** Delay before a worker connection's `times`-th reconnect: 250 ms doubling, at most 2 s. */
export const reconnectDelayMs = (times: number) => Math.min(250 * 2 ** Math.max(0, times - 1), 2000);

/** BullMQ's states folded onto the JobQueue's five. */
const STATE: Record<string, JobState> = {
  waiting: 'waiting',
  wait: 'waiting',
  prioritized: 'waiting',
  'waiting-children': 'waiting',
  delayed: 'delayed',
  active: 'active',
  completed: 'completed',
  failed: 'failed',
};

export class BullMqJobQueue implements JobQueue {
  private readonly opts: BullMqQueueOptions;
  private readonly prefix: string;
  private readonly producers = new Map<string, Queue>();
  /** Each running worker with the controller that signals its handlers on shutdown. */
  private readonly workers = new Map<Worker, AbortController>();
  private closing: Promise<void> | undefined;

  constructor(opts: BullMqQueueOptions) {
    this.opts = opts;
    this.prefix = opts.prefix ?? 'kvrag';
  }

  private producer(name: string): Queue {
    if (this.closing) throw new Error('queue is closed');
    validateQueueName(name);
    let q = this.producers.get(name);
    if (!q) {
      // Producers fail fast when Redis is away (one reconnect try), so callers such as the outbox relay
      // get an error to record instead of a promise that waits for Redis forever.
      q = new Queue(name, {
        connection: { url: this.opts.url, maxRetriesPerRequest: 1 },
        prefix: this.prefix,
      });
      q.on('error', (err) =>
        this.opts.log?.('warn', 'queue connection error', { queue: name, error: err.message }),
      );
      this.producers.set(name, q);
    }
    return q;
  }

  async enqueue<T>(queue: string, data: T, opts: EnqueueOptions = {}): Promise<string> {
    if (opts.jobId !== undefined) validateJobId(opts.jobId);
    const job = await this.producer(queue).add(queue, data, {
      jobId: opts.jobId,
      attempts: Math.max(1, opts.attempts ?? DEFAULT_ATTEMPTS),
      backoff: { type: 'exponential', delay: opts.backoffMs ?? DEFAULT_BACKOFF_MS },
      delay: opts.delayMs,
      removeOnComplete: {
        age: this.opts.keepCompletedSec ?? 24 * 3600,
        count: this.opts.keepCompletedCount ?? 10_000,
      },
      removeOnFail: { age: this.opts.keepFailedSec ?? 7 * 24 * 3600 },
    });
    return job.id!;
  }

  consume<T>(
    queue: string,
    handler: (data: T, ctx: JobContext) => Promise<unknown>,
    opts: ConsumeOptions = {},
  ): Consumer {
    if (this.closing) throw new Error('queue is closed');
    validateQueueName(queue);
    const shutdown = new AbortController();
    const processor = async (job: Job, token?: string) => {
      const ctx: JobContext = {
        id: job.id!,
        attempt: job.attemptsMade + 1,
        signal: shutdown.signal,
        // BullMQ's progress starts as the number 0: only an object is a saved one
        progress: typeof job.progress === 'object' ? job.progress : undefined,
        saveProgress: (value) => job.updateProgress(value),
      };
      try {
        const result = await handler(job.data as T, ctx);
        if (opts.redactOnComplete) await job.updateData(opts.redactOnComplete(job.data));
        return result;
      } catch (err) {
        if (err instanceof UnrecoverableJobError || (err as Error)?.name === 'UnrecoverableJobError') {
          throw new UnrecoverableError((err as Error).message);
        }
        if (shutdown.signal.aborted && token) {
          // Stopped by our own shutdown: hand the job back without spending one of its tries.
          await job.moveToDelayed(Date.now(), token);
          throw new DelayedError();
        }
        if (err instanceof DeferJobError && token) {
          // For another consumer: back to the queue after the delay, untried.
          await job.moveToDelayed(Date.now() + err.delayMs, token);
          throw new DelayedError();
        }
        throw err;
      }
    };
    const worker = new Worker(queue, processor, {
      connection: { url: this.opts.url, maxRetriesPerRequest: null, retryStrategy: reconnectDelayMs },
      prefix: this.prefix,
      concurrency: Math.max(1, opts.concurrency ?? 1),
      lockDuration: this.opts.lockDurationMs ?? 30_000,
      stalledInterval: this.opts.stalledIntervalMs ?? 30_000,
      maxStalledCount: this.opts.maxStalledCount ?? 1,
    });
    worker.on('error', (err) => this.opts.log?.('warn', 'worker error', { queue, error: err.message }));
    worker.on('failed', (job, err) =>
      this.opts.log?.('warn', 'job try failed', {
        queue,
        jobId: job?.id,
        attempt: job?.attemptsMade,
        error: err.message,
      }),
    );
    this.workers.set(worker, shutdown);
    return { close: () => this.closeWorker(worker) };
  }

  private async closeWorker(worker: Worker): Promise<void> {
    this.workers.get(worker)?.abort();
    const boundMs = this.opts.lockDurationMs ?? 30_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const closed = await Promise.race([
      worker.close().then(() => true),
      new Promise<false>((r) => {
        timer = setTimeout(() => r(false), boundMs);
      }),
    ]);
    clearTimeout(timer);
    if (!closed) {
      this.opts.log?.('warn', 'worker did not finish closing within its lock duration; left behind', {
        queue: worker.name,
        ms: boundMs,
      });
      // what BullMQ's close would not end: its connections, so they stop retrying
      void worker.disconnect().catch(() => {});
    }
    this.workers.delete(worker);
  }

  async getJob<T = unknown>(queue: string, id: string): Promise<JobInfo<T> | null> {
    const job = await this.producer(queue).getJob(id);
    if (!job) return null;
    const state = await job.getState();
    if (state === 'unknown') return null; // removed between the two reads
    const info: JobInfo<T> = {
      id: job.id!,
      queue,
      data: job.data as T,
      state: STATE[state] ?? 'waiting',
      attemptsMade: job.attemptsMade,
    };
    if (job.failedReason) info.failedReason = job.failedReason;
    return info;
  }

  async counts(queue: string): Promise<Record<JobState, number>> {
    const c = await this.producer(queue).getJobCounts(
      'waiting',
      'prioritized',
      'waiting-children',
      'delayed',
      'active',
      'completed',
      'failed',
    );
    return {
      waiting: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c['waiting-children'] ?? 0),
      delayed: c.delayed ?? 0,
      active: c.active ?? 0,
      completed: c.completed ?? 0,
      failed: c.failed ?? 0,
    };
  }

  /** Graceful: workers stop taking jobs and wait for running handlers; then connections are released. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.workers.keys()].map((w) => this.closeWorker(w)));
      await Promise.all([...this.producers.values()].map((q) => q.close()));
      this.producers.clear();
    })();
    return this.closing;
  }
}
