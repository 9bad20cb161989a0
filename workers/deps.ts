// What the ingestion workers need, as interfaces: the same object serves `kvrag workers` (Postgres,
// S3, BullMQ) and the embedded `kvrag serve` (PGlite, filesystem, in-process queue).
import type { Database } from '../src/db/types.ts';
import type { EmbeddingResolver } from '../src/embeddings/resolver.ts';
import type { Log } from '../contracts/log.ts';
import type { BlobStore } from '../contracts/blob-store.ts';
import type { DocumentParser } from './parse-pool.ts';
import type { ServingModel } from './serving-model.ts';

export interface WorkerDeps {
  db: Database;
  /** Raw uploads (read by ingest) and KV artifacts (deleted by gc). */
  blobs: BlobStore;
  /** Builds a collection's embedding provider from its stored settings. */
  embeddings: EmbeddingResolver;
  /** Tokenizer and fingerprint of the model whose KV artifacts this deployment serves. */
  model: ServingModel;
  /**
   * Parses and chunks uploads within the ingest limits (startWorkers gives a ParsePool: worker threads
   * with a time limit). Absent: parsed on the calling thread, without limits.
   */
  parser?: DocumentParser;
  log?: Log;
}

export const errorText = (err: unknown): string =>
  (err instanceof Error ? err.message : String(err)).slice(0, 2000);
