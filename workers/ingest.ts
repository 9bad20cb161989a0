// The `ingest` job: one uploaded document from its raw blob to embedded chunks and scheduled precompute.
//
//   load document (tenant-scoped) + collection → status parsing → parse → chunking → chunk with the
//   serving model's tokenizer at the collection's settings (both in a parse thread with a time limit,
//   within the ingest limits: workers/parse-pool.ts) → embedding → embed with the collection's
//   provider → ONE transaction: replace the document's chunks, look up their artifacts, set status
//   `precomputing` (or `ready` when every artifact exists), add outbox `precompute` jobs for the missing.
//   An artifact counts as existing only when this tenant already has the chunk in a ready document:
//   dedupe across tenants would show in the status and timing (issue 19 §5), storage is shared anyway.
//
// Chunking: in the serving model's tokens (the tokenizer only is loaded, see serving-model.ts), at the
// collection's `chunk_settings` — defaults 512 tokens per chunk, 64 tokens shared by consecutive chunks,
// cuts preferring paragraph/line/sentence/word boundaries within size/8 below the size
// (src/ingest/chunking.ts). Each chunk is later prefilled alone into a KV artifact, so 512 keeps a
// chunk's prefill short and its artifact small (kvrag-tiny: 4 layers × 2 kv heads × 32 dims × 2 (K, V)
// × f16 = 1 KiB per token, 512 KiB per full chunk) while holding a few paragraphs of context.
//
// Each status transition is its own committed update, so GET /v1/documents/:id shows progress. Every
// update is conditional on the row still existing: a document deleted meanwhile makes the job a no-op.
// Errors: bad input (a non-retryable AppError below 500: unparseable, empty, over an ingest cap, unknown
// provider) marks the document `failed` with the message and throws UnrecoverableJobError (no retries);
// anything else (database, blob store or embedder away) records its kind on the document (tenantErrorText:
// no driver errors or addresses; the worker log has the details), keeps its status, and is rethrown so the
// queue retries — after the last try the reconciler (reconciler.ts) re-drives the document later, and
// fails it only after bounded re-drives: never stuck, never failed for an outage that ends. A re-run
// replaces the chunks and writes the same outbox job ids: idempotent (a re-drive's job ids carry the
// document's re-drive count).
//
// Artifact lookup and gc: the artifacts this document relies on are read FOR SHARE inside the chunk
// transaction; gc deletes artifacts only through FOR UPDATE SKIP LOCKED (workers/gc.ts). Either gc
// committed first (the rows are gone, this lookup misses them and schedules precompute) or this lookup
// locked them first (gc skips them, and after commit the new chunks reference them).
import { and, eq, inArray, sql } from 'drizzle-orm';
import {
  chunks,
  collections,
  type DocumentStatus,
  documentJobs,
  documents,
  kvArtifacts,
} from '../src/db/schema.ts';
import type { Database } from '../src/db/types.ts';
import type { EmbeddingProviderId } from '../src/embeddings/types.ts';
import { AppError } from '../contracts/errors.ts';
import { parseChunkingOptions } from '../src/ingest/chunking.ts';
import { embedChunks, type PreparedChunk } from '../src/ingest/prepare.ts';
import { parseJob } from '../contracts/jobs.ts';
import { DEFAULT_ATTEMPTS } from '../src/queue/rules.ts';
import type { JobContext } from '../contracts/queue.ts';
import { UnrecoverableJobError } from '../contracts/queue.ts';
import { errorText, tenantErrorText, type WorkerDeps } from './deps.ts';
import { inlineParser } from './parse-pool.ts';
import { type MissingChunk, schedulePrecompute } from './precompute-jobs.ts';

export type IngestResult =
  | { outcome: 'deleted' }
  /** A late or repeated delivery for a document already past ingest: nothing to do. */
  | { outcome: 'done'; status: DocumentStatus }
  | { outcome: 'indexed'; status: 'precomputing' | 'ready'; chunks: number; precomputeJobs: number };

/** Statuses an ingest job has nothing left to do in (it is scheduled only for a `queued` document). */
const PAST_INGEST: ReadonlySet<DocumentStatus> = new Set(['precomputing', 'ready', 'failed']);

/** Rows per INSERT statement (postgres.js bind parameters stay well under the protocol limit). */
const INSERT_BATCH = 200;

/** The document was deleted while the job ran; unwinds to a no-op result. */
class DocumentGone extends Error {}

interface Scope {
  tenantId: string;
  documentId: string;
}

const docWhere = (s: Scope) => and(eq(documents.id, s.documentId), eq(documents.tenantId, s.tenantId));

/**
 * Persists a status; throws DocumentGone when the row is gone. The last error (a previous try's) stays
 * visible until the job succeeds or fails for good.
 */
async function setStatus(db: Database, s: Scope, status: DocumentStatus): Promise<void> {
  const rows = await db.update(documents).set({ status }).where(docWhere(s)).returning({ id: documents.id });
  if (rows.length === 0) throw new DocumentGone();
}

/** Bad input: retrying cannot help (a 429 from an embedding server can). */
const isPermanent = (err: unknown) => err instanceof AppError && err.status < 500 && !err.retryable;

export interface IngestOptions {
  /** Tries the queue gives the job (its `attempts`): the last transient failure marks the document failed. */
  maxAttempts?: number;
}

export async function handleIngest(
  deps: WorkerDeps,
  data: unknown,
  ctx: JobContext,
  opts: IngestOptions = {},
): Promise<IngestResult> {
  const job = parseJob('ingest', data);
  const scope: Scope = { tenantId: job.tenantId, documentId: job.documentId };
  const { db } = deps;
  try {
    const [doc] = await db.select().from(documents).where(docWhere(scope));
    if (!doc || doc.collectionId !== job.collectionId) throw new DocumentGone();
    // a queue delivers at least once (a lost acknowledgement, a restored Redis): a repeat of a finished
    // ingest must not take a ready document back through parsing
    if (PAST_INGEST.has(doc.status)) return { outcome: 'done', status: doc.status };
    const [collection] = await db
      .select()
      .from(collections)
      .where(and(eq(collections.id, doc.collectionId), eq(collections.tenantId, job.tenantId)));
    if (!collection) throw new DocumentGone();

    await setStatus(db, scope, 'parsing');
    const key = doc.objectKey ?? job.objectKey;
    const raw = await deps.blobs.get(key);
    if (!raw) {
      // the delete route removes the blob after the row: re-check before calling it lost
      const [still] = await db.select({ id: documents.id }).from(documents).where(docWhere(scope));
      if (!still) throw new DocumentGone();
      throw new AppError('bad_request', `the raw upload is missing from the blob store (${key})`);
    }
    const embedder = deps.embeddings({
      provider: collection.embeddingProvider as EmbeddingProviderId,
      model: collection.embeddingModel,
      dimension: collection.embeddingDim,
    });
    if (embedder.dimension !== collection.embeddingDim) {
      throw new AppError(
        'bad_request',
        `embedder dimension ${embedder.dimension} differs from the collection's ${collection.embeddingDim}`,
      );
    }
    // parse + chunk within the ingest limits, off this thread where a ParsePool is configured
    const parsed = await (deps.parser ?? inlineParser(deps.model.tokenizer)).parse(
      {
        input: { data: raw, contentType: doc.contentType, filename: doc.filename },
        // a vector store file's own chunking, else the collection's
        chunking: parseChunkingOptions(doc.chunkSettings ?? collection.chunkSettings),
      },
      { signal: ctx.signal, onChunking: () => setStatus(db, scope, 'chunking') },
    );
    if (parsed.chunks.length === 0) throw new AppError('bad_request', 'the document has no text to index');
    await setStatus(db, scope, 'embedding');
    const prepared = await embedChunks(parsed.chunks, embedder, { signal: ctx.signal });
    const target = { ...scope, collectionId: doc.collectionId, redrive: doc.redrives };
    return await storeChunks(deps, target, prepared, parsed.tokenIds);
  } catch (err) {
    if (err instanceof DocumentGone) {
      deps.log?.('info', 'ingest: document deleted meanwhile, nothing to do', { documentId: job.documentId });
      return { outcome: 'deleted' };
    }
    if (isPermanent(err)) {
      await markFailed(db, scope, errorText(err));
      throw new UnrecoverableJobError(errorText(err));
    }
    // transient: keep the status, show the reason, let the queue retry (a shutdown is no failure to show).
    // After the queue's last try the document stays as it is: the reconciler re-drives it once the
    // database, store or embedder is back, and fails it only after its own bounded re-drives.
    if (ctx.signal.aborted) throw err;
    const last = ctx.attempt >= (opts.maxAttempts ?? DEFAULT_ATTEMPTS);
    const note = last
      ? `${ctx.attempt} tries failed, the reconciler retries later: ${tenantErrorText(err)}`
      : `retrying: ${tenantErrorText(err)}`;
    await db
      .update(documents)
      .set({ error: note })
      .where(docWhere(scope))
      .catch(() => {});
    throw err;
  }
}

/**
 * `failed` with the error, no chunks (a re-run of a once-indexed document drops its old ones) and no jobs
 * to wait on. Also the reconciler's last word on a document it gave up on.
 */
export async function markFailed(
  db: Pick<Database, 'transaction'>,
  s: Scope,
  message: string,
): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.delete(chunks).where(and(eq(chunks.documentId, s.documentId), eq(chunks.tenantId, s.tenantId)));
    await tx.delete(documentJobs).where(eq(documentJobs.documentId, s.documentId));
    await tx.update(documents).set({ status: 'failed', error: message }).where(docWhere(s));
  });
}

/** `tokenIds`: of each distinct chunk text, by content hash (computed with the chunks, off this thread). */
async function storeChunks(
  deps: WorkerDeps,
  s: Scope & { collectionId: string; redrive: number },
  prepared: PreparedChunk[],
  tokenIds: Map<string, number[]>,
): Promise<IngestResult> {
  const fingerprint = deps.model.fingerprint;
  return deps.db.transaction(async (tx) => {
    // Locks the document against a concurrent delete; gone = deleted meanwhile.
    const [locked] = await tx.select({ id: documents.id }).from(documents).where(docWhere(s)).for('update');
    if (!locked) throw new DocumentGone();
    await tx.delete(chunks).where(and(eq(chunks.documentId, s.documentId), eq(chunks.tenantId, s.tenantId)));
    const ids: string[] = [];
    for (let i = 0; i < prepared.length; i += INSERT_BATCH) {
      const rows = await tx
        .insert(chunks)
        .values(
          prepared.slice(i, i + INSERT_BATCH).map((c) => ({
            tenantId: s.tenantId,
            collectionId: s.collectionId,
            documentId: s.documentId,
            ordinal: c.ordinal,
            text: c.text,
            tokenCount: c.tokenCount,
            contentHash: c.contentHash,
            embedding: Array.from(c.embedding),
            embeddingDim: c.embedding.length,
            attributes: c.pages ? { pages: c.pages } : {},
          })),
        )
        .returning({ id: chunks.id });
      ids.push(...rows.map((r) => r.id));
    }
    // one precompute per distinct chunk text, first occurrence first
    const firstOf = new Map<string, number>();
    prepared.forEach((c, i) => {
      if (!firstOf.has(c.contentHash)) firstOf.set(c.contentHash, i);
    });
    const hashes = [...firstOf.keys()];
    const ready = new Set<string>();
    for (let i = 0; i < hashes.length; i += INSERT_BATCH) {
      const rows = await tx
        .select({ h: kvArtifacts.chunkHash })
        .from(kvArtifacts)
        .where(
          and(
            eq(kvArtifacts.modelFingerprint, fingerprint),
            eq(kvArtifacts.status, 'ready'),
            inArray(kvArtifacts.chunkHash, hashes.slice(i, i + INSERT_BATCH)),
            // this tenant already has it in a ready document: another tenant's copy does not count, so
            // neither the status nor the timing of this document tells whether someone else holds the text
            sql`exists (select 1 from ${chunks} c join ${documents} d on d.id = c.document_id
                  where c.tenant_id = ${s.tenantId} and c.content_hash = ${kvArtifacts.chunkHash}
                    and d.status = 'ready')`,
          ),
        )
        .for('share', { of: kvArtifacts });
      for (const r of rows) ready.add(r.h);
    }
    const missing: MissingChunk[] = hashes
      .filter((h) => !ready.has(h))
      .map((h) => {
        const i = firstOf.get(h)!;
        return { chunkHash: h, chunkId: ids[i], tokenIds: tokenIds.get(h)! };
      });
    const status = missing.length === 0 ? 'ready' : 'precomputing';
    await tx.update(documents).set({ status, error: null }).where(docWhere(s));
    const jobs = await schedulePrecompute(
      tx,
      { fingerprint, tenantId: s.tenantId, documentId: s.documentId, redrive: s.redrive },
      missing,
    );
    return { outcome: 'indexed' as const, status, chunks: prepared.length, precomputeJobs: jobs };
  });
}
