// The jobs the API schedules, written to the transactional outbox (src/queue/outbox.ts) in the caller's
// transaction, so a job exists if and only if the state change that needs it committed; the relay
// (workers/) moves rows to the queue. addToOutbox checks payloads against the versioned contracts of
// contracts/jobs.ts. Job ids are deterministic, so a retried request cannot schedule the same work
// twice (outbox.job_id is unique; BullMQ refuses ids containing ':', hence '-').
import type { JobInput } from '../../contracts/jobs.ts';
import { ingestJobId } from './job-ids.ts';
import { addToOutbox, type OutboxWriter } from './outbox.ts';

export { ingestJobId };
export const gcJobId = (subjectId: string) => `gc-${subjectId}`;

export async function scheduleIngest(tx: OutboxWriter, job: Omit<JobInput<'ingest'>, 'v'>): Promise<string> {
  const jobId = ingestJobId(job.documentId);
  await addToOutbox(tx, { queue: 'ingest', jobId, payload: { v: 1, ...job } });
  return jobId;
}

/** `subject` names the job (default: the document, file or collection it collects after). */
export async function scheduleGc(
  tx: OutboxWriter,
  job: Omit<JobInput<'gc'>, 'v'>,
  subject = job.documentId ?? job.fileId ?? job.collectionId,
): Promise<string> {
  if (!subject) throw new Error('a gc job needs a subject: a document, file or collection, or one given');
  const jobId = gcJobId(subject);
  await addToOutbox(tx, { queue: 'gc', jobId, payload: { v: 1, ...job } });
  return jobId;
}
