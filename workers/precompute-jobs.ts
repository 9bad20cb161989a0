// The `precompute` jobs an ingest schedules for chunks whose KV artifact is missing, as outbox entries.
//
// Batches: at most PRECOMPUTE_BATCH chunks per job, so one runner job stays short (a lock renewal or a
// retry repeats little work) while the queue does not hold one job per chunk.
// Job ids: sha256 over (model fingerprint, document id, the batch's chunk hashes) — a re-run of the same
// ingest writes the same ids, so the outbox (job_id unique) and the queue drop the repeats. The document
// id is part of it on purpose: an id of only (fingerprint, hashes) would be shared by another document
// with the same chunks, and if that document's job completed long ago and its artifacts were collected
// since, the outbox would drop the new job as a duplicate and this document would wait forever. Two
// documents sharing missing chunks at the same time both schedule them; artifacts are content-addressed
// and precompute-done upserts, so the repeat costs runner time, never correctness.
import { createHash } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { PrecomputeJob } from '../contracts/jobs.ts';
import { documentJobs } from '../src/db/schema.ts';
import type { Database } from '../src/db/types.ts';
import { addToOutbox, type OutboxEntry } from '../src/queue/outbox.ts';

export const PRECOMPUTE_BATCH = 16;

export interface MissingChunk {
  chunkHash: string;
  chunkId: string;
  /** The serving model's token ids of the chunk text (no special tokens). */
  tokenIds: number[];
}

export function precomputeJobId(
  fingerprint: string,
  documentId: string,
  chunkHashes: string[],
  redrive = 0,
): string {
  const h = createHash('sha256').update(`kvrag-precompute-v1\n${fingerprint}\n${documentId}`);
  if (redrive > 0) h.update(`\nredrive ${redrive}`);
  for (const c of chunkHashes) h.update(`\n${c}`);
  return `precompute-${h.digest('hex').slice(0, 48)}`;
}

/**
 * Outbox entries for `missing` (in the given order), PRECOMPUTE_BATCH chunks per job; `redrive` is the
 * document's re-drive count (workers/reconciler.ts), so a re-drive's jobs never collide with lost ones.
 */
export function precomputeEntries(
  fingerprint: string,
  documentId: string,
  missing: MissingChunk[],
  redrive = 0,
  batchSize = PRECOMPUTE_BATCH,
): OutboxEntry<'precompute'>[] {
  const out: OutboxEntry<'precompute'>[] = [];
  for (let i = 0; i < missing.length; i += batchSize) {
    const batch = missing.slice(i, i + batchSize);
    const payload: PrecomputeJob = {
      v: 1,
      modelFingerprint: fingerprint,
      chunks: batch.map((c) => ({
        chunkHash: c.chunkHash,
        tokenIds: c.tokenIds,
        documentId,
        chunkId: c.chunkId,
      })),
    };
    out.push({
      queue: 'precompute',
      jobId: precomputeJobId(
        fingerprint,
        documentId,
        batch.map((c) => c.chunkHash),
        redrive,
      ),
      payload,
    });
  }
  return out;
}

/**
 * Schedules the precompute jobs of a document's missing chunks in the caller's transaction: their outbox
 * rows, and their ids as the jobs the document waits on (document_jobs, replacing the previous ones).
 */
export async function schedulePrecompute(
  tx: Pick<Database, 'insert' | 'delete'>,
  s: { fingerprint: string; tenantId: string; documentId: string; redrive: number },
  missing: MissingChunk[],
): Promise<number> {
  const entries = precomputeEntries(s.fingerprint, s.documentId, missing, s.redrive);
  await tx.delete(documentJobs).where(eq(documentJobs.documentId, s.documentId));
  for (const e of entries) await addToOutbox(tx, e);
  for (let i = 0; i < entries.length; i += 500) {
    await tx.insert(documentJobs).values(
      entries.slice(i, i + 500).map((e) => ({
        documentId: s.documentId,
        tenantId: s.tenantId,
        queue: e.queue,
        jobId: e.jobId,
      })),
    );
  }
  return entries.length;
}
