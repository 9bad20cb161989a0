// The reconciler: no document stays in queued/parsing/chunking/embedding/precomputing for ever. The
// database is the source of truth; the queue can lose work — Redis under `appendfsync everysec` loses the
// last second of acknowledged jobs when killed, BullMQ fails a job that stalls twice, a job's retries can
// run out while Postgres is down (and then nothing can record it), a precompute-done can be lost.
//
// Every pass takes the documents not finished whose row has not changed for `afterMs` (each stage writes
// the row, so this is "no progress"), oldest first, and for each:
//   1. asks whether it still waits on a live job: its ingest job (queued…embedding) or its precompute jobs
//      (document_jobs) and their precompute-done, waiting, delayed or running in the queue, or an outbox
//      row not yet relayed. A live job is left alone however long it takes (a backlog, or a precompute job
//      deferred for a runner of its model during a rolling update);
//   2. otherwise re-drives it, idempotently, from the database: queued…embedding → a new ingest job
//      (status `queued`); precomputing → `ready` when every chunk has its artifact by now, else new
//      precompute jobs for the chunks still missing one. A re-drive's job ids carry the document's
//      re-drive count, so they never collide with the lost jobs' ids, which the queue may still dedupe;
//   3. after `attempts` re-drives, marks it `failed` with the reason instead.
// The row is locked (FOR UPDATE SKIP LOCKED) and re-checked before it is changed, so several workers
// processes reconcile side by side, and a document that moved on meanwhile is left alone.
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import { chunks, type Document, documentJobs, documents, kvArtifacts, outbox } from '../src/db/schema.ts';
import { retriesExhausted } from '../src/documents/failure.ts';
import { ingestJobId } from '../src/queue/job-ids.ts';
import { addToOutbox } from '../src/queue/outbox.ts';
import type { JobQueue, JobState } from '../contracts/queue.ts';
import { errorText, type WorkerDeps } from './deps.ts';
import { markFailed } from './ingest.ts';
import { type MissingChunk, schedulePrecompute } from './precompute-jobs.ts';

export interface ReconcilerOptions {
  /** A document unchanged this long is checked (default 10 minutes). */
  afterMs?: number;
  /** Re-drives of one document before it is marked failed (default 5). */
  attempts?: number;
  /** Period of the pass (default afterMs / 4, between 1 s and 1 min). */
  everyMs?: number;
  /** Documents per pass (default 100). */
  batch?: number;
}

export interface ReconcileResult {
  /** Documents past the deadline that were looked at. */
  checked: number;
  /** … still waiting on a live job. */
  waiting: number;
  redriven: number;
  ready: number;
  failed: number;
}

const LIVE: ReadonlySet<JobState> = new Set(['waiting', 'delayed', 'active']);

type Candidate = Pick<
  Document,
  | 'id'
  | 'tenantId'
  | 'collectionId'
  | 'status'
  | 'error'
  | 'redrives'
  | 'objectKey'
  | 'contentType'
  | 'filename'
>;

const staleFor = (afterMs: number) =>
  sql`${documents.updatedAt} < now() - ${`${Math.floor(afterMs)} milliseconds`}::interval`;

/** One pass; see the file comment. */
export async function reconcileOnce(
  deps: WorkerDeps,
  queue: JobQueue,
  opts: ReconcilerOptions = {},
): Promise<ReconcileResult> {
  const afterMs = opts.afterMs ?? 600_000;
  const out: ReconcileResult = { checked: 0, waiting: 0, redriven: 0, ready: 0, failed: 0 };
  const rows: Candidate[] = await deps.db
    .select({
      id: documents.id,
      tenantId: documents.tenantId,
      collectionId: documents.collectionId,
      status: documents.status,
      error: documents.error,
      redrives: documents.redrives,
      objectKey: documents.objectKey,
      contentType: documents.contentType,
      filename: documents.filename,
    })
    .from(documents)
    // literal statuses: the predicate of the partial index documents_unfinished_idx
    .where(and(sql`${documents.status} not in ('ready', 'failed')`, staleFor(afterMs)))
    .orderBy(documents.updatedAt)
    .limit(opts.batch ?? 100);
  for (const doc of rows) {
    out.checked++;
    if (await waitsOnLiveJob(deps, queue, doc)) {
      out.waiting++;
      continue;
    }
    const r = await redrive(deps, doc, afterMs, opts.attempts ?? 5);
    if (r !== 'moved') out[r]++;
  }
  return out;
}

/** The jobs a document waits on now: its ingest job, or (precomputing) its precompute jobs. */
async function jobsOf(deps: WorkerDeps, doc: Candidate): Promise<{ queue: string; jobId: string }[]> {
  if (doc.status !== 'precomputing') return [{ queue: 'ingest', jobId: ingestJobId(doc.id, doc.redrives) }];
  return deps.db
    .select({ queue: documentJobs.queue, jobId: documentJobs.jobId })
    .from(documentJobs)
    .where(eq(documentJobs.documentId, doc.id));
}

async function waitsOnLiveJob(deps: WorkerDeps, queue: JobQueue, doc: Candidate): Promise<boolean> {
  const jobs = await jobsOf(deps, doc);
  if (jobs.length === 0) return false;
  const [unrelayed] = await deps.db
    .select({ id: outbox.id })
    .from(outbox)
    .where(
      and(
        inArray(
          outbox.jobId,
          jobs.map((j) => j.jobId),
        ),
        isNull(outbox.deliveredAt),
      ),
    )
    .limit(1);
  if (unrelayed) return true;
  for (const j of jobs) {
    const state = (await queue.getJob(j.queue, j.jobId))?.state;
    if (state && LIVE.has(state)) return true;
    // a finished precompute job's report may still be on its way
    if (j.queue === 'precompute' && state === 'completed') {
      const done = (await queue.getJob('precompute-done', `precompute-done-${j.jobId}`))?.state;
      if (done && LIVE.has(done)) return true;
    }
  }
  return false;
}

/**
 * The distinct chunks of a document without a ready artifact of the serving model, first occurrence first.
 * As at ingest (workers/ingest.ts), an artifact counts only when this tenant already has the chunk in a
 * ready document: another tenant's copy must not make this document ready (issue 19 §5, no cross-tenant
 * side channel); its precompute is re-driven instead, and its own precompute-done readies it.
 */
async function missingChunks(
  deps: WorkerDeps,
  tenantId: string,
  documentId: string,
): Promise<MissingChunk[]> {
  const rows = await deps.db
    .select({ id: chunks.id, hash: chunks.contentHash, text: chunks.text })
    .from(chunks)
    .leftJoin(
      kvArtifacts,
      and(
        eq(kvArtifacts.chunkHash, chunks.contentHash),
        eq(kvArtifacts.modelFingerprint, deps.model.fingerprint),
        eq(kvArtifacts.status, 'ready'),
        sql`exists (select 1 from ${chunks} c join ${documents} d on d.id = c.document_id
              where c.tenant_id = ${tenantId} and c.content_hash = ${kvArtifacts.chunkHash}
                and d.status = 'ready')`,
      ),
    )
    .where(and(eq(chunks.documentId, documentId), isNull(kvArtifacts.id)))
    .orderBy(chunks.ordinal);
  const out: MissingChunk[] = [];
  const seen = new Set<string>();
  let since = Date.now();
  for (const r of rows) {
    if (seen.has(r.hash)) continue;
    seen.add(r.hash);
    out.push({ chunkHash: r.hash, chunkId: r.id, tokenIds: deps.model.tokenizer.encode(r.text) });
    // timers and I/O get a turn (this can run in the process that serves the API)
    if (Date.now() - since > 50) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      since = Date.now();
    }
  }
  return out;
}

async function redrive(
  deps: WorkerDeps,
  doc: Candidate,
  afterMs: number,
  attempts: number,
): Promise<'redriven' | 'ready' | 'failed' | 'moved'> {
  const scope = { tenantId: doc.tenantId, documentId: doc.id };
  // computed before the row is locked (tokenizing can take a while); re-checked under the lock
  const missing = doc.status === 'precomputing' ? await missingChunks(deps, doc.tenantId, doc.id) : [];
  const outcome = await deps.db.transaction(async (tx) => {
    const [cur] = await tx
      .select({ id: documents.id })
      .from(documents)
      .where(
        and(
          eq(documents.id, doc.id),
          eq(documents.tenantId, doc.tenantId),
          eq(documents.status, doc.status),
          eq(documents.redrives, doc.redrives),
          staleFor(afterMs),
        ),
      )
      .for('update', { skipLocked: true });
    if (!cur) return 'moved' as const;
    if (doc.status === 'precomputing' && missing.length === 0) {
      await tx.update(documents).set({ status: 'ready', error: null }).where(eq(documents.id, doc.id));
      return 'ready' as const;
    }
    if (doc.redrives >= attempts || (doc.status !== 'precomputing' && !doc.objectKey)) {
      const last = doc.error ? ` (last error: ${doc.error})` : '';
      const reason = retriesExhausted(doc.redrives, `no progress in ${doc.status}${last}`);
      await markFailed(tx, scope, reason.slice(0, 2000));
      return 'failed' as const;
    }
    const n = doc.redrives + 1;
    const why = `re-driven (${n} of ${attempts}) after no progress in ${doc.status} for ${Math.round(afterMs / 1000)} s`;
    if (doc.status === 'precomputing') {
      const fingerprint = deps.model.fingerprint;
      await schedulePrecompute(tx, { fingerprint, ...scope, redrive: n }, missing);
      await tx
        .update(documents)
        .set({ redrives: n, error: doc.error ? `${why}; last error: ${doc.error}` : why })
        .where(eq(documents.id, doc.id));
    } else {
      await tx
        .update(documents)
        .set({ status: 'queued', redrives: n, error: doc.error ? `${why}; last error: ${doc.error}` : why })
        .where(eq(documents.id, doc.id));
      await addToOutbox(tx, {
        queue: 'ingest',
        jobId: ingestJobId(doc.id, n),
        payload: {
          v: 1,
          tenantId: doc.tenantId,
          collectionId: doc.collectionId,
          documentId: doc.id,
          objectKey: doc.objectKey as string,
          contentType: doc.contentType,
          filename: doc.filename,
        },
      });
    }
    return 'redriven' as const;
  });
  if (outcome !== 'moved') {
    deps.log?.(outcome === 'failed' ? 'warn' : 'info', `reconciler: document ${outcome}`, {
      documentId: doc.id,
      status: doc.status,
      redrives: doc.redrives,
    });
  }
  return outcome;
}

export interface RunningReconciler {
  stop(): Promise<void>;
}

/** Runs reconcileOnce every `everyMs` until stopped (a pass that throws is logged and tried next time). */
export function startReconciler(
  deps: WorkerDeps,
  queue: JobQueue,
  opts: ReconcilerOptions = {},
): RunningReconciler {
  const afterMs = opts.afterMs ?? 600_000;
  const everyMs = opts.everyMs ?? Math.min(60_000, Math.max(1000, afterMs / 4));
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    running ??= reconcileOnce(deps, queue, opts)
      .then(() => undefined)
      .catch((err: unknown) => deps.log?.('warn', 'reconciler pass failed', { error: errorText(err) }))
      .finally(() => {
        running = undefined;
      });
  }, everyMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
