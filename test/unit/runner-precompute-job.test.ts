// The runner's `precompute` consumer (in-process runner, in-process queue, memory object store): a chunk
// some tier already holds is computed again for a new job (its time must not tell a tenant that another
// stored the same text), only what an earlier try of the same job checkpointed is skipped, the report names
// the job's documents, and the completed job keeps no token ids.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactObjectKey } from '../../contracts/artifacts.ts';
import { chunkKey } from '../../gpu-runner/engine/kv/precompute.ts';
import { handlePrecompute } from '../../gpu-runner/server/precompute-consumer.ts';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import { enqueueJob, type PrecomputeDoneJob, parseJob } from '../../contracts/jobs.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let runner: Runner;
let queue: MemoryJobQueue;
let blobs: MemoryBlobStore;
const done: PrecomputeDoneJob[] = [];

beforeAll(async () => {
  queue = new MemoryJobQueue();
  blobs = new MemoryBlobStore();
  runner = await createRunner({
    modelDir: models.make('pj', { arch: 'llama', seed: 11 }),
    backend: 'reference',
    blobs,
    queue,
    dtype: 'f32',
  });
  await runner.start();
  queue.consume('precompute-done', async (d) => {
    done.push(parseJob('precompute-done', d));
  });
});
afterAll(async () => {
  await runner?.stop({ graceMs: 0 });
  await queue?.close();
  models.cleanup();
});

const hash = (i: number) => i.toString(16).padStart(64, '0');
const ids = (seed: number) => Array.from({ length: 12 }, (_, i) => (i * 7 + seed * 13) % 50);

describe('runner precompute jobs', () => {
  it('computes a chunk again though a tier holds it, reports the documents, keeps no token ids once done', async () => {
    const e = runner.core.engine;
    const tokenIds = ids(1);
    const key = chunkKey(e, tokenIds, 'f32');
    await runner.core.store.put(key, new Uint8Array(0)); // some tier "holds" it (an empty placeholder)
    const before = (await blobs.head(artifactObjectKey(e.fingerprint, key)))?.size ?? 0;
    const documentId = crypto.randomUUID();
    await enqueueJob(
      queue,
      'precompute',
      { v: 1, modelFingerprint: e.fingerprint, chunks: [{ chunkHash: hash(1), tokenIds, documentId }] },
      { jobId: 'pj-1' },
    );
    await waitFor(() => done.length === 1, 'precompute-done');
    expect(done[0].documentIds).toEqual([documentId]);
    expect(done[0].artifacts).toHaveLength(1);
    // computed and stored for real: a full artifact, not the placeholder
    const info = await blobs.head(done[0].artifacts[0].objectKey);
    expect(info!.size).toBe(done[0].artifacts[0].bytes);
    expect(info!.size).toBeGreaterThan(before);
    const kept = await queue.getJob('precompute', 'pj-1');
    expect(kept?.state).toBe('completed');
    expect(JSON.stringify(kept?.data)).not.toContain('tokenIds');
    expect((kept!.data as { chunks: { chunkHash: string }[] }).chunks[0].chunkHash).toBe(hash(1));
  });

  it('a later try skips exactly what an earlier try checkpointed (and still holds), computes the rest', async () => {
    const e = runner.core.engine;
    const chunks = [2, 3, 4].map((i) => ({ chunkHash: hash(i), tokenIds: ids(i) }));
    const keys = chunks.map((c) => chunkKey(e, c.tokenIds, 'f32'));
    const saved: unknown[] = [];
    const ctx = (progress: unknown) => ({
      id: 'pj-2',
      attempt: 1,
      signal: new AbortController().signal,
      progress,
      saveProgress: async (v: Record<string, unknown>) => {
        saved.push(v);
      },
    });
    const job = { v: 1 as const, modelFingerprint: e.fingerprint, chunks };
    // first try: everything computed, each batch checkpointed
    expect(await handlePrecompute(runner.core, queue, blobs, job, ctx(undefined))).toEqual({
      stored: 3,
      skipped: 0,
      failed: 0,
    });
    expect(saved.at(-1)).toEqual({ stored: keys });
    // a try that finds two of them checkpointed skips those two
    expect(await handlePrecompute(runner.core, queue, blobs, job, ctx({ stored: keys.slice(0, 2) }))).toEqual(
      { stored: 1, skipped: 2, failed: 0 },
    );
    // a checkpointed key whose object is gone (gc) is computed again
    await blobs.delete(artifactObjectKey(e.fingerprint, keys[0]));
    expect(await handlePrecompute(runner.core, queue, blobs, job, ctx({ stored: keys }))).toEqual({
      stored: 1,
      skipped: 2,
      failed: 0,
    });
    expect(await blobs.head(artifactObjectKey(e.fingerprint, keys[0]))).not.toBeNull();
  });
});
