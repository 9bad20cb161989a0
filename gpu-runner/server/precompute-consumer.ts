// Consumer of `precompute` jobs (DESIGN.md §1): prefill each chunk alone, store its KV artifact in the
// object store, then enqueue one `precompute-done` listing what is stored (and for which documents). The
// runner never touches Postgres. Safe to run again after a crash: each batch's keys are checkpointed in the
// job (ctx.saveProgress) and a later try skips them, object writes are atomic (a half-written artifact
// never appears under its key), and `precompute-done` carries a job id derived from the precompute job, so
// a redelivered job cannot report twice. A completed job keeps no token ids or text (redactOnComplete).
import { artifactObjectKey } from '../../contracts/artifacts.ts';
import { formatVersionFor } from '../engine/kv/artifact-format.ts';
import { chunkKey, precomputeChunks } from '../engine/kv/precompute.ts';
import type { BlobStore } from '../../contracts/blob-store.ts';
import { enqueueJob, type PrecomputeJob, parseJob, redactPrecomputeJob } from '../../contracts/jobs.ts';
import { type Consumer, DeferJobError, type JobContext, type JobQueue } from '../../contracts/queue.ts';
import type { Log } from '../../contracts/log.ts';
import type { RunnerCore } from './core.ts';

export interface PrecomputeConsumerOptions {
  concurrency?: number;
  /** How long a job of another model is left for a matching runner before this one looks again. */
  deferMs?: number;
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
    { concurrency: opts.concurrency ?? 1, redactOnComplete: redactPrecomputeJob },
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
    // a runner of another model cannot do this job, but a runner of its model can (during a rolling
    // update both serve): leave it for one, untried
    throw new DeferJobError(
      `precompute job for model ${job.modelFingerprint}, this runner serves ${e.fingerprint}`,
      opts.deferMs ?? 5000,
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
  // chunks per hold of the engine (the operator's cap); shutdown is checked between batches
  const batch = core.limits.precomputeBatch;
  const artifacts: Done[] = [];
  let stored = 0;
  let skipped = 0;
  // keys an earlier try of this very job stored (its checkpoint): only those are skipped. Everything else
  // is computed even when some tier holds it: the job's time must not tell its tenant whether another
  // tenant stored the same text (ingest already skips what this tenant has), and the object store must end
  // up holding the artifact whatever a local tier says.
  const own = new Set<string>((ctx.progress as { stored?: string[] } | undefined)?.stored ?? []);
  for (let i = 0; i < todo.length; i += batch) {
    // shutting down: give the job back (it is retried; what this try stored is skipped next time)
    if (ctx.signal.aborted) throw new Error('runner shutting down; precompute job handed back');
    const part = todo.slice(i, i + batch).map((c) => ({ ...c, key: chunkKey(e, c.tokenIds, core.dtype) }));
    const fresh: typeof part = [];
    for (const c of part) {
      // checkpointed but gone from the object store since (gc): computed again
      if (own.has(c.key) && (await blobs.head(artifactObjectKey(e.fingerprint, c.key)))) continue;
      own.delete(c.key);
      fresh.push(c);
    }
    const results = await core.scheduler.mutex.run(() =>
      precomputeChunks(e, core.store, fresh, { dtype: core.dtype, force: true }),
    );
    const bytesOf = new Map(results.filter((r) => !r.skipped).map((r) => [r.key, r.bytes]));
    for (const c of part) {
      const bytes = bytesOf.get(c.key) ?? 0;
      if (bytes > 0) stored++;
      else skipped++;
      artifacts.push({
        chunkHash: c.chunkHash,
        objectKey: artifactObjectKey(e.fingerprint, c.key),
        bytes,
        formatVersion: formatVersionFor(core.dtype),
      });
      own.add(c.key);
    }
    await ctx.saveProgress?.({ stored: [...own] });
  }
  // skipped artifacts were stored earlier (maybe by a run that died): their size comes from the store
  for (const a of artifacts) {
    if (a.bytes > 0) continue;
    const info = await blobs.head(a.objectKey);
    if (!info) throw new Error(`artifact ${a.objectKey} reported stored but missing from the object store`);
    a.bytes = info.size;
  }
  const documentIds = [...new Set(job.chunks.flatMap((c) => (c.documentId ? [c.documentId] : [])))];
  core.metrics.precompute('stored', stored);
  core.metrics.precompute('skipped', skipped);
  core.metrics.precompute('failed', failed.length);
  await enqueueJob(
    queue,
    'precompute-done',
    {
      v: 1,
      modelFingerprint: e.fingerprint,
      artifacts,
      failed,
      runnerId: core.id,
      ...(documentIds.length > 0 && job.chunks.every((c) => c.documentId) ? { documentIds } : {}),
    },
    { jobId: `precompute-done-${ctx.id}` },
  );
  opts.log?.('info', 'precompute job done', { job: ctx.id, stored, skipped, failed: failed.length });
  return { stored, skipped, failed: failed.length };
}
