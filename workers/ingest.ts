// The `ingest` job: one uploaded document from its raw blob to embedded chunks and scheduled precompute.
//
//   load document (tenant-scoped) + collection → status parsing → parse → chunking → chunk with the
//   serving model's tokenizer at the collection's settings → embedding → embed with the collection's
//   provider → ONE transaction: replace the document's chunks, look up their artifacts, set status
//   `precomputing` (or `ready` when every artifact exists), add outbox `precompute` jobs for the missing.
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
// Errors: bad input (a non-retryable AppError below 500: unparseable, empty, unknown provider) marks the
// document `failed` with the message and throws UnrecoverableJobError (no retries); anything else
// (database, blob store or embedder away) records the message on the document, keeps its status, and is
// rethrown so the queue retries — on the last try the document ends `failed` instead, never stuck. A re-run replaces the chunks and writes the same outbox job ids: idempotent.
//
// Artifact lookup and gc: the artifacts this document relies on are read FOR SHARE inside the chunk
// transaction; gc deletes artifacts only through FOR UPDATE SKIP LOCKED (workers/gc.ts). Either gc
// committed first (the rows are gone, this lookup misses them and schedules precompute) or this lookup
// locked them first (gc skips them, and after commit the new chunks reference them).
import { and, eq, inArray } from 'drizzle-orm';
import { chunks, collections, type DocumentStatus, documents, kvArtifacts } from '../src/db/schema.ts';
import type { Database } from '../src/db/types.ts';
import { retriesExhausted } from '../src/documents/failure.ts';
import type { EmbeddingProviderId } from '../src/embeddings/types.ts';
import { AppError } from '../contracts/errors.ts';
import { parseChunkingOptions } from '../src/ingest/chunking.ts';
import { type PreparedChunk, prepareDocument } from '../src/ingest/prepare.ts';
import { parseJob } from '../contracts/jobs.ts';
import { addToOutbox } from '../src/queue/outbox.ts';
import { DEFAULT_ATTEMPTS } from '../src/queue/rules.ts';
import type { JobContext } from '../contracts/queue.ts';
import { UnrecoverableJobError } from '../contracts/queue.ts';
import { errorText, type WorkerDeps } from './deps.ts';
import { type MissingChunk, precomputeEntries } from './precompute-jobs.ts';

export type IngestResult =
  | { outcome: 'deleted' }
  | { outcome: 'indexed'; status: 'precomputing' | 'ready'; chunks: number; precomputeJobs: number };

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
    const prepared = await prepareDocument(
      { data: raw, contentType: doc.contentType, filename: doc.filename },
      {
        tokenizer: deps.model.tokenizer,
        embedder,
        // a vector store file's own chunking, else the collection's
        chunking: parseChunkingOptions(doc.chunkSettings ?? collection.chunkSettings),
        signal: ctx.signal,
        onStage: (stage) => setStatus(db, scope, stage),
      },
    );
    if (prepared.chunks.length === 0) throw new AppError('bad_request', 'the document has no text to index');
    return await storeChunks(deps, { ...scope, collectionId: doc.collectionId }, prepared.chunks);
  } catch (err) {
    if (err instanceof DocumentGone) {
      deps.log?.('info', 'ingest: document deleted meanwhile, nothing to do', { documentId: job.documentId });
      return { outcome: 'deleted' };
    }
    if (isPermanent(err)) {
      await markFailed(db, scope, errorText(err));
      throw new UnrecoverableJobError(errorText(err));
    }
    // transient: keep the status, show the reason, let the queue retry (a shutdown is no failure to show)
    if (ctx.signal.aborted) throw err;
    if (ctx.attempt >= (opts.maxAttempts ?? DEFAULT_ATTEMPTS)) {
      await markFailed(db, scope, retriesExhausted(ctx.attempt, errorText(err))).catch(() => {});
      throw err;
    }
    await db
      .update(documents)
      .set({ error: `retrying: ${errorText(err)}` })
      .where(docWhere(scope))
      .catch(() => {});
    throw err;
  }
}

/** `failed` with the error, and no chunks (a re-run of a once-indexed document drops its old ones). */
async function markFailed(db: Database, s: Scope, message: string): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.delete(chunks).where(and(eq(chunks.documentId, s.documentId), eq(chunks.tenantId, s.tenantId)));
    await tx.update(documents).set({ status: 'failed', error: message }).where(docWhere(s));
  });
}

async function storeChunks(
  deps: WorkerDeps,
  s: Scope & { collectionId: string },
  prepared: PreparedChunk[],
): Promise<IngestResult> {
  const fingerprint = deps.model.fingerprint;
  // token ids of each distinct chunk, for its precompute job: computed before the transaction opens
  // (seconds for a long document), yielding to timers and I/O every ~50 ms
  const tokenIds = new Map<string, number[]>();
  let since = Date.now();
  for (const c of prepared) {
    if (tokenIds.has(c.contentHash)) continue;
    tokenIds.set(c.contentHash, deps.model.tokenizer.encode(c.text));
    if (Date.now() - since > 50) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      since = Date.now();
    }
  }
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
          ),
        )
        .for('share');
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
    const entries = precomputeEntries(fingerprint, s.documentId, missing);
    for (const e of entries) await addToOutbox(tx, e);
    return { outcome: 'indexed' as const, status, chunks: prepared.length, precomputeJobs: entries.length };
  });
}
