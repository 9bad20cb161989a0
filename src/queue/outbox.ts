// The transactional outbox: a job is written as a row in the same transaction as the state change that
// needs it, so the job exists if and only if that change committed. workers/outbox-relay.ts moves rows to
// the queue. outbox.job_id is unique, so writing the same job twice (a retried request) is a no-op, and
// the relay enqueues with the same id, so the queue dedupes a row relayed twice.
import { outbox } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import { checkJob, isJobName, type JobInput, type JobName } from '../../contracts/jobs.ts';
import { validateJobId, validateQueueName } from './rules.ts';

/** Anything drizzle can insert through: the database or a transaction. */
export type OutboxWriter = Pick<Database, 'insert'>;

export interface OutboxEntry<N extends JobName = JobName> {
  queue: N;
  jobId: string;
  payload: JobInput<N>;
}

/**
 * Inserts the job's outbox row through `tx` (the caller's transaction). The payload is checked against
 * its contract and the id against the queue's rules here, so a bad job fails the request that writes
 * it instead of sitting in the outbox. Returns false when a row with this job id already exists.
 */
export async function addToOutbox<N extends JobName>(
  tx: OutboxWriter,
  entry: OutboxEntry<N>,
): Promise<boolean> {
  validateQueueName(entry.queue);
  if (!isJobName(entry.queue)) throw new Error(`unknown job queue ${JSON.stringify(entry.queue)}`);
  validateJobId(entry.jobId);
  const payload = checkJob(entry.queue, entry.payload);
  const rows = await tx
    .insert(outbox)
    .values({ queue: entry.queue, jobId: entry.jobId, payload })
    .onConflictDoNothing({ target: outbox.jobId })
    .returning({ id: outbox.id });
  return rows.length > 0;
}
