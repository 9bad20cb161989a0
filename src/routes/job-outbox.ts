// The jobs the API schedules, written to the transactional outbox in the caller's transaction, so a job
// exists if and only if the state change that needs it committed. The relay (workers/) moves rows to
// the queue. Job ids are deterministic, so a retried request cannot schedule the same work twice
// (outbox.job_id is unique; BullMQ refuses ids containing ':', hence '-').
//
// TODO(queue): switch to addToOutbox and the versioned contracts of src/queue/ once they land; the
// payloads below are the shapes this API writes today.
import { outbox } from '../db/schema.ts';
import type { Database } from '../db/types.ts';

/** Anything drizzle can insert through: the database or a transaction. */
type Tx = Pick<Database, 'insert'>;

/** `ingest`: parse → chunk → embed → precompute one uploaded document. */
export interface IngestJobV1 {
  v: 1;
  tenantId: string;
  collectionId: string;
  documentId: string;
  /** The raw upload in the blob store. */
  objectKey: string;
  contentType: string;
  filename: string;
}

/**
 * `gc`: storage no longer referenced after a delete. Rows are already gone when this runs: the worker
 * deletes the blobs (idempotent) and the KV artifacts (rows and objects) of `chunkHashes` that no
 * remaining chunk references.
 */
export interface GcJobV1 {
  v: 1;
  tenantId: string;
  collectionId: string;
  /** Absent when the whole collection was deleted. */
  documentId?: string;
  blobKeys: string[];
  /** Every blob under this prefix goes too (collection deletes). */
  blobPrefix?: string;
  /** Distinct sha256 of the deleted chunks' texts (kv_artifacts.chunk_hash). */
  chunkHashes: string[];
}

export const ingestJobId = (documentId: string) => `ingest-${documentId}`;
export const gcJobId = (subjectId: string) => `gc-${subjectId}`;

/** Inserts an outbox row; a row with the same job id already there means the job is scheduled. */
async function addJob(tx: Tx, queue: string, jobId: string, payload: object): Promise<void> {
  await tx.insert(outbox).values({ queue, jobId, payload }).onConflictDoNothing({ target: outbox.jobId });
}

export async function scheduleIngest(tx: Tx, job: Omit<IngestJobV1, 'v'>): Promise<string> {
  const jobId = ingestJobId(job.documentId);
  await addJob(tx, 'ingest', jobId, { v: 1, ...job } satisfies IngestJobV1);
  return jobId;
}

export async function scheduleGc(tx: Tx, job: Omit<GcJobV1, 'v'>): Promise<string> {
  const jobId = gcJobId(job.documentId ?? job.collectionId);
  await addJob(tx, 'gc', jobId, { v: 1, ...job } satisfies GcJobV1);
  return jobId;
}
