// The jobs the API schedules, written to the transactional outbox in the caller's transaction, so a job
// exists if and only if the state change that needs it committed; the relay (workers/) moves rows to the
// queue. Payloads are checked against the versioned contracts of src/queue/contracts.ts. Job ids are
// deterministic, so a retried request cannot schedule the same work twice (outbox.job_id is unique;
// BullMQ refuses ids containing ':', hence '-').
//
// TODO(queue): call addToOutbox (src/queue/outbox.ts) once it is committed; same semantics as addJob.
import { outbox } from '../db/schema.ts';
import type { Database } from '../db/types.ts';
import { checkJob, type JobInput, type JobName } from '../queue/contracts.ts';
import { validateJobId } from '../queue/rules.ts';

/** Anything drizzle can insert through: the database or a transaction. */
type Tx = Pick<Database, 'insert'>;

export const ingestJobId = (documentId: string) => `ingest-${documentId}`;
export const gcJobId = (subjectId: string) => `gc-${subjectId}`;

/** Inserts an outbox row; a row with the same job id already there means the job is scheduled. */
async function addJob<N extends JobName>(
  tx: Tx,
  queue: N,
  jobId: string,
  payload: JobInput<N>,
): Promise<void> {
  validateJobId(jobId);
  await tx
    .insert(outbox)
    .values({ queue, jobId, payload: checkJob(queue, payload) })
    .onConflictDoNothing({ target: outbox.jobId });
}

export async function scheduleIngest(tx: Tx, job: Omit<JobInput<'ingest'>, 'v'>): Promise<string> {
  const jobId = ingestJobId(job.documentId);
  await addJob(tx, 'ingest', jobId, { v: 1, ...job });
  return jobId;
}

export async function scheduleGc(tx: Tx, job: Omit<JobInput<'gc'>, 'v'>): Promise<string> {
  const jobId = gcJobId(job.documentId ?? job.collectionId);
  await addJob(tx, 'gc', jobId, { v: 1, ...job });
  return jobId;
}
