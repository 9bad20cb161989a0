// Consumer of `precompute` jobs (DESIGN.md §1): prefill each chunk alone, store its KV artifact in the
// object store, then enqueue one `precompute-done` listing what is stored. The runner never touches
// Postgres. Safe to run again after a crash: artifacts are content-keyed and skipped when stored, object
// writes are atomic (a half-written artifact never appears under its key), and `precompute-done` carries
// a job id derived from the precompute job, so a redelivered job cannot report twice.
import { artifactObjectKey } from '../../contracts/artifacts.ts';
import { formatVersionFor } from '../engine/kv/artifact-format.ts';
import { precomputeChunks } from '../engine/kv/precompute.ts';
import type { BlobStore } from '../../contracts/blob-store.ts';
import { enqueueJob, type PrecomputeJob, parseJob } from '../../contracts/jobs.ts';
import {
  type Consumer,
  type JobContext,
  type JobQueue,
  UnrecoverableJobError,
} from '../../contracts/queue.ts';
import type { Log } from '../../contracts/log.ts';
import type { RunnerCore } from './core.ts';

export interface PrecomputeConsumerOptions {
  /** Chunks per engine batch; the job checks for shutdown between batches. Default 16. */
  batchChunks?: number;
  concurrency?: number;
  log?: Log;
}

type Done = { chunkHash: string; objectKey: string; bytes: number; formatVersion: number };

/** Starts consuming `precompute`; close() stops taking jobs and waits for the running one. */
export function startPrecomputeConsumer(
  core: RunnerCore,
  queue: JobQueue,
  blobs: BlobStore,
  opts: PrecomputeConsumerOptions = {},
): Consumer {
  return queue.consume(
    'precompute',
    (data, ctx) => handlePrecompute(core, queue, blobs, parseJob('precompute', data), ctx, opts),
    { concurrency: opts.concurrency ?? 1 },
  );
}

export async function handlePrecompute(
  core: RunnerCore,
  queue: JobQueue,
  blobs: BlobStore,
  job: PrecomputeJob,
  ctx: JobContext,
  opts: PrecomputeConsumerOptions = {},
): Promise<{ stored: number; skipped: number; failed: number }> {
  const e = core.engine;
  if (job.modelFingerprint !== e.fingerprint) {
    // a runner of another model can never do this job
    throw new UnrecoverableJobError(
      `precompute job for model ${job.modelFingerprint}, this runner serves ${e.fingerprint}`,
    );
  }
  const failed: { chunkHash: string; error: string }[] = [];
  const todo: { chunkHash: string; tokenIds: number[] }[] = [];
  for (const c of job.chunks) {
    const tokenIds = c.tokenIds ?? e.encode(c.text!);
    const problem =
      tokenIds.length === 0
        ? 'chunk encodes to no tokens'
        : tokenIds.length > e.maxContext
          ? `chunk of ${tokenIds.length} tokens exceeds the model context ${e.maxContext}`
          : tokenIds.some((t) => t >= e.config.vocabSize)
            ? 'token ids outside the vocabulary'
            : null;
    if (problem) failed.push({ chunkHash: c.chunkHash, error: problem });
    else todo.push({ chunkHash: c.chunkHash, tokenIds });
  }
  const batch = opts.batchChunks ?? 16;
  const artifacts: Done[] = [];
  let stored = 0;
  let skipped = 0;
  for (let i = 0; i < todo.length; i += batch) {
    // shutting down: give the job back (it is retried; what is stored already is skipped next time)
    if (ctx.signal.aborted) throw new Error('runner shutting down; precompute job handed back');
    const part = todo.slice(i, i + batch);
    const results = await core.scheduler.mutex.run(() =>
      precomputeChunks(e, core.store, part, { dtype: core.dtype }),
    );
    for (const [j, r] of results.entries()) {
      if (r.skipped) skipped++;
      else stored++;
      artifacts.push({
        chunkHash: part[j].chunkHash,
        objectKey: artifactObjectKey(e.fingerprint, r.key),
        bytes: r.bytes,
        formatVersion: formatVersionFor(core.dtype),
      });
    }
  }
  // skipped artifacts were stored earlier (maybe by a run that died): their size comes from the store
  for (const a of artifacts) {
    if (a.bytes > 0) continue;
    const info = await blobs.head(a.objectKey);
    if (!info) throw new Error(`artifact ${a.objectKey} reported stored but missing from the object store`);
    a.bytes = info.size;
  }
  core.metrics.precompute('stored', stored);
  core.metrics.precompute('skipped', skipped);
  core.metrics.precompute('failed', failed.length);
  await enqueueJob(
    queue,
    'precompute-done',
    { v: 1, modelFingerprint: e.fingerprint, artifacts, failed, runnerId: core.id },
    { jobId: `precompute-done-${ctx.id}` },
  );
  opts.log?.('info', 'precompute job done', { job: ctx.id, stored, skipped, failed: failed.length });
  return { stored, skipped, failed: failed.length };
}
