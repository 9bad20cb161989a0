// Outbox relay: moves committed outbox rows to the job queue, each exactly once.
//
// One pass (relayOnce) is one transaction: lock a batch of undelivered rows (FOR UPDATE SKIP LOCKED, so
// concurrent relays take disjoint batches), enqueue each with jobId = the row's job_id, mark the enqueued
// ones delivered, record attempts and last_error on the ones whose enqueue failed (they are retried next
// pass), commit. A relay that dies after enqueueing but before committing leaves its rows undelivered; the
// next pass enqueues them again under the same job ids and the queue drops the duplicates (BullMQ dedupes
// while the job is kept: completed jobs are kept a day, see src/queue/bullmq.ts). Consumers stay
// idempotent against the database as well, as the queue's dedupe window is finite.
import { asc, eq, inArray, isNull, sql } from 'drizzle-orm';
import { outbox } from '../src/db/schema.ts';
import type { Database } from '../src/db/types.ts';
import type { EnqueueOptions, JobQueue } from '../contracts/queue.ts';
import type { Log } from '../contracts/log.ts';

export interface RelayOptions {
  /** Rows per pass (default 100). */
  batchSize?: number;
  /** Retry policy per queue (default: the queue's defaults). */
  optionsFor?: (queue: string) => Omit<EnqueueOptions, 'jobId'>;
  log?: Log;
  /**
   * When a row counts as delivered. 'enqueued' (default) suits a durable queue (BullMQ). 'finished' is for
   * the in-process queue, which loses its jobs with the process: a row is marked only once its job has
   * completed or failed, and until then each pass re-enqueues it (a no-op while the job exists, by its
   * id), so after a crash the restarted process queues the unfinished jobs again.
   */
  markWhen?: 'enqueued' | 'finished';
  /** Test hook: runs after the rows are enqueued and marked, before the commit. */
  beforeCommit?: (delivered: number[]) => Promise<void>;
}

export interface RelayResult {
  /** Rows marked delivered in this pass. */
  delivered: number;
  /** Rows whose enqueue failed (attempts and last_error recorded). */
  failed: number;
  /** markWhen 'finished': rows enqueued whose job has not finished yet. */
  pending: number;
}

type Row = typeof outbox.$inferSelect;

/** One pass over at most batchSize undelivered rows, in one transaction. */
export async function relayOnce(
  db: Database,
  queue: JobQueue,
  opts: RelayOptions = {},
): Promise<RelayResult> {
  return db.transaction(async (tx) => {
    // Rows that keep failing sort after fresh ones, so a poison row never starves the rows behind it.
    const rows: Row[] = await tx
      .select()
      .from(outbox)
      .where(isNull(outbox.deliveredAt))
      .orderBy(asc(outbox.attempts), asc(outbox.id))
      .limit(opts.batchSize ?? 100)
      .for('update', { skipLocked: true });
    const delivered: number[] = [];
    let failed = 0;
    let pending = 0;
    for (const row of rows) {
      try {
        await queue.enqueue(row.queue, row.payload, { ...opts.optionsFor?.(row.queue), jobId: row.jobId });
        if (opts.markWhen === 'finished') {
          const state = (await queue.getJob(row.queue, row.jobId))?.state;
          if (state !== 'completed' && state !== 'failed') {
            pending++;
            continue;
          }
        }
        delivered.push(row.id);
      } catch (err) {
        failed++;
        const message = err instanceof Error ? err.message : String(err);
        opts.log?.('warn', 'outbox enqueue failed', {
          id: row.id,
          queue: row.queue,
          jobId: row.jobId,
          error: message,
        });
        await tx
          .update(outbox)
          .set({ attempts: sql`${outbox.attempts} + 1`, lastError: message.slice(0, 2000) })
          .where(eq(outbox.id, row.id));
      }
    }
    if (delivered.length > 0) {
      await tx
        .update(outbox)
        .set({ deliveredAt: sql`now()`, attempts: sql`${outbox.attempts} + 1`, lastError: null })
        .where(inArray(outbox.id, delivered));
    }
    await opts.beforeCommit?.(delivered);
    return { delivered: delivered.length, failed, pending };
  });
}

/** Deletes delivered rows older than retentionMs, a batch at a time; returns how many went. */
export async function pruneDeliveredOutbox(db: Database, retentionMs: number, batch = 1000): Promise<number> {
  let total = 0;
  for (;;) {
    const gone = await db.execute(
      sql`delete from ${outbox} where id in (
            select id from ${outbox}
            where delivered_at < now() - ${`${Math.floor(retentionMs)} milliseconds`}::interval
            limit ${batch})
          returning id`,
    );
    const n = Array.isArray(gone) ? gone.length : ((gone as { rows?: unknown[] }).rows?.length ?? 0);
    total += n;
    if (n < batch) return total;
  }
}

export interface RelayLoopOptions extends RelayOptions {
  /** Pause between passes when the outbox is drained (default 500 ms). */
  idleMs?: number;
  /** Delivered rows older than this are deleted (default 24 h); 0 = keep them. */
  retentionMs?: number;
  /** How often the relay prunes delivered rows (default 60 s). */
  pruneEveryMs?: number;
  /** Pause after a pass that threw, e.g. the database is away (default 2 s). */
  errorMs?: number;
}

export interface RelayLoop {
  /** Starts the next pass now instead of after the idle pause (call after committing outbox rows). */
  poke(): void;
  /** Finishes the pass in progress, then stops. */
  stop(): Promise<void>;
}

/** Runs relayOnce until stopped: back to back while full batches come back, else every idleMs. */
export function startOutboxRelay(db: Database, queue: JobQueue, opts: RelayLoopOptions = {}): RelayLoop {
  const batchSize = opts.batchSize ?? 100;
  let stopped = false;
  let wake: (() => void) | undefined;
  /** Set by poke() during a pass, so the pause after it is skipped. */
  let poked = false;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      if (poked || stopped) return resolve();
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    }).finally(() => {
      wake = undefined;
    });
  const retentionMs = opts.retentionMs ?? 24 * 3600_000;
  let prunedAt = 0;
  const loop = (async () => {
    while (!stopped) {
      poked = false;
      try {
        if (retentionMs > 0 && Date.now() - prunedAt >= (opts.pruneEveryMs ?? 60_000)) {
          prunedAt = Date.now();
          const pruned = await pruneDeliveredOutbox(db, retentionMs);
          if (pruned > 0) opts.log?.('info', 'outbox: delivered rows past retention deleted', { pruned });
        }
        const r = await relayOnce(db, queue, { ...opts, batchSize });
        if (r.delivered + r.failed + r.pending < batchSize || r.delivered === 0)
          await pause(opts.idleMs ?? 500);
      } catch (err) {
        opts.log?.('error', 'outbox relay pass failed', {
          error: err instanceof Error ? err.message : String(err),
        });
        if (!stopped) await pause(opts.errorMs ?? 2000);
      }
    }
  })();
  return {
    poke() {
      poked = true;
      wake?.();
    },
    async stop() {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}
