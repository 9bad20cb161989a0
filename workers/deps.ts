// What the ingestion workers need, as interfaces: the same object serves `kvrag workers` (Postgres,
// S3, BullMQ) and the embedded `kvrag serve` (PGlite, filesystem, in-process queue).
import type { Database } from '../src/db/types.ts';
import { AppError, type ErrorCode } from '../contracts/errors.ts';
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

/** What a tenant reads of a failure that is not about their input, by code; the details go to the log. */
const TENANT_TEXT: Partial<Record<ErrorCode, string>> = {
  upstream_unavailable: 'an upstream service (such as the embedding provider) is unavailable',
  unavailable: 'a service kvrag depends on is unavailable',
  timeout: 'a service kvrag depends on timed out',
  rate_limited: 'an upstream service is rate limiting requests',
};

/**
 * documents.last_error text: a bad-input AppError's own message (it is about the tenant's document), else
 * only the kind of failure — never a driver error, host name, address or stack line (those are logged).
 */
export const tenantErrorText = (err: unknown): string =>
  err instanceof AppError && err.status < 500 && !err.retryable
    ? errorText(err)
    : ((err instanceof AppError ? TENANT_TEXT[err.code] : undefined) ?? 'an internal error');
