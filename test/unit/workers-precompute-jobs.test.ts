// Precompute jobs an ingest writes: batches of at most PRECOMPUTE_BATCH chunks, valid contract payloads,
// ids that repeat for the same (model, document, chunks) and differ when any of them changes.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkJob } from '../../contracts/jobs.ts';
import { validateJobId } from '../../src/queue/rules.ts';
import { PRECOMPUTE_BATCH, precomputeEntries, precomputeJobId } from '../../workers/precompute-jobs.ts';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const FP = 'f'.repeat(64);
const DOC = '0b9c6a53-8a5e-4a5e-9f55-3f0f3a1f3c11';
const missing = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    chunkHash: sha(`c${i}`),
    chunkId: `id-${i}`,
    tokenIds: [i + 1, i + 2],
  }));

describe('precompute outbox entries', () => {
  it('batches in order, at most PRECOMPUTE_BATCH chunks a job, each a valid contract payload', () => {
    const chunks = missing(2 * PRECOMPUTE_BATCH + 3);
    const entries = precomputeEntries(FP, DOC, chunks);
    expect(entries.map((e) => e.payload.chunks.length)).toEqual([PRECOMPUTE_BATCH, PRECOMPUTE_BATCH, 3]);
    expect(entries.flatMap((e) => e.payload.chunks.map((c) => c.chunkHash))).toEqual(
      chunks.map((c) => c.chunkHash),
    );
    for (const e of entries) {
      expect(e.queue).toBe('precompute');
      expect(validateJobId(e.jobId)).toBe(e.jobId);
      expect(checkJob('precompute', e.payload)).toMatchObject({ v: 1, modelFingerprint: FP });
      for (const c of e.payload.chunks) expect(c.documentId).toBe(DOC);
    }
    expect(new Set(entries.map((e) => e.jobId)).size).toBe(entries.length);
    expect(precomputeEntries(FP, DOC, [])).toEqual([]);
  });

  it('job ids repeat for the same input and change with the model, the document or any chunk', () => {
    const hashes = missing(4).map((c) => c.chunkHash);
    const id = precomputeJobId(FP, DOC, hashes);
    expect(precomputeJobId(FP, DOC, [...hashes])).toBe(id);
    expect(precomputeJobId('e'.repeat(64), DOC, hashes)).not.toBe(id);
    expect(precomputeJobId(FP, DOC.replace('0b', '1b'), hashes)).not.toBe(id);
    expect(precomputeJobId(FP, DOC, [...hashes.slice(0, 3), sha('other')])).not.toBe(id);
    expect(precomputeJobId(FP, DOC, hashes.slice(0, 3))).not.toBe(id);
  });
});
