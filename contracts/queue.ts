// The job queue behind one interface. Implementations in src/queue/: BullMQ on Redis (bullmq.ts) for
// distributed mode and an in-process one (memory.ts) for embedded mode and unit tests. Payloads are plain
// data validated by the versioned zod contracts in jobs.ts, never internal objects.

export type JobState = 'waiting' | 'delayed' | 'active' | 'completed' | 'failed';

export interface EnqueueOptions {
  /**
   * Idempotency key: a job with an id that already exists (waiting, running, or kept after it finished)
   * is not added again. 1-256 characters of A-Z a-z 0-9 . _ ~ @ + = -, not all digits (src/queue/rules.ts).
   */
  jobId?: string;
  /** Total tries including the first (default 5). */
  attempts?: number;
  /** Base delay of the exponential backoff between tries, ms (default 1000). */
  backoffMs?: number;
  delayMs?: number;
}

export interface JobInfo<T = unknown> {
  id: string;
  queue: string;
  data: T;
  state: JobState;
  /** Tries that ended (failed or completed); a try cut short by a stall or a shutdown does not count. */
  attemptsMade: number;
  failedReason?: string;
}

export interface JobContext {
  id: string;
  /** 1 on the first try. */
  attempt: number;
  /** Aborted when the consumer is shutting down; long jobs should stop and let the job be retried. */
  signal: AbortSignal;
  /** What an earlier try of this job saved with saveProgress (undefined on a fresh job). */
  progress?: unknown;
  /**
   * Saves plain data that a later try of the same job (after a crash, a stall, a retry) reads back. Both
   * queues provide it; a context built by hand (tests) may not.
   */
  saveProgress?(value: Record<string, unknown>): Promise<void>;
}

export interface ConsumeOptions {
  concurrency?: number;
  /**
   * What is kept of a job's payload once it completed (kept a while for id dedupe and status lookups):
   * e.g. the precompute consumer drops chunk token ids and text, so deleted documents' content does not
   * live on in the queue. Default: the payload as it was.
   */
  redactOnComplete?: (data: unknown) => unknown;
}

/** Thrown by a handler when retrying can never succeed (bad input): the job fails at once. */
export class UnrecoverableJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnrecoverableJobError';
  }
}

/**
 * Thrown by a handler that cannot do this job but another consumer can (a runner of another model during
 * a rolling update): the job goes back to the queue after `delayMs` without spending one of its tries.
 */
export class DeferJobError extends Error {
  readonly delayMs: number;
  constructor(message: string, delayMs: number) {
    super(message);
    this.name = 'DeferJobError';
    this.delayMs = delayMs;
  }
}

export interface Consumer {
  close(): Promise<void>;
}

export interface JobQueue {
  enqueue<T>(queue: string, data: T, opts?: EnqueueOptions): Promise<string>;
  consume<T>(
    queue: string,
    handler: (data: T, ctx: JobContext) => Promise<unknown>,
    opts?: ConsumeOptions,
  ): Consumer;
  getJob<T = unknown>(queue: string, id: string): Promise<JobInfo<T> | null>;
  counts(queue: string): Promise<Record<JobState, number>>;
  /** Graceful shutdown: stop taking jobs, wait for running handlers, release connections. */
  close(): Promise<void>;
}
