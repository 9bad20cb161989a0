// Test helper: plays the runner's side of precompute without an engine. Each chunk gets a real (if tiny)
// KV artifact — valid preamble and checksummed header with the chunk's token ids under its canonical key,
// K/V of one layer, one head, one dimension, all zeros — so the precompute-done consumer's checks
// (workers/artifact-check.ts) see exactly what a runner would have stored.
import { artifactObjectKey } from '../../contracts/artifacts.ts';
import type { BlobStore } from '../../contracts/blob-store.ts';
import { enqueueJob, type PrecomputeJob } from '../../contracts/jobs.ts';
import type { Consumer, JobQueue } from '../../contracts/queue.ts';
import { artifactKey, encodeArtifact, type KVDType } from '../../gpu-runner/engine/kv/artifact-format.ts';

/** Stores the artifact of `tokenIds` under its canonical object key; returns the key and size. */
export async function storeTinyArtifact(
  blobs: BlobStore,
  fingerprint: string,
  tokenIds: readonly number[],
  dtype: KVDType = 'f16',
): Promise<{ objectKey: string; bytes: number }> {
  const n = tokenIds.length;
  const bytes = encodeArtifact(
    {
      fingerprint,
      tokenizerHash: 'test-tokenizer',
      dtype,
      tokenIds,
      layers: 1,
      kvHeads: 1,
      headDim: 1,
      rope: { theta: 10_000, scaling: null },
    },
    [{ k: new Float32Array(n), v: new Float32Array(n) }],
  );
  const objectKey = artifactObjectKey(fingerprint, artifactKey({ fingerprint, dtype, tokenIds }));
  await blobs.put(objectKey, bytes);
  return { objectKey, bytes: bytes.byteLength };
}

/**
 * Consumes `precompute` as a runner would: stores each chunk's artifact, then one `precompute-done` naming
 * the job's documents. `onJob` sees each job first (to record or to delay it).
 */
export function consumePrecompute(
  queue: JobQueue,
  blobs: BlobStore,
  onJob?: (job: PrecomputeJob) => void | Promise<void>,
): Consumer {
  return queue.consume<PrecomputeJob>('precompute', async (job) => {
    await onJob?.(job);
    const artifacts = [];
    for (const c of job.chunks) {
      const stored = await storeTinyArtifact(blobs, job.modelFingerprint, c.tokenIds!);
      artifacts.push({ chunkHash: c.chunkHash, ...stored, formatVersion: 1 });
    }
    const documentIds = [...new Set(job.chunks.flatMap((c) => (c.documentId ? [c.documentId] : [])))];
    await enqueueJob(queue, 'precompute-done', {
      v: 1,
      modelFingerprint: job.modelFingerprint,
      artifacts,
      documentIds,
    });
  });
}
