// What the API needs from the outside world, as interfaces; entries (Node serve, Workers) build it.
// Type-only imports: nothing here may pull a Node-only module into the Workers build.
import type { ApiMetrics } from './api-metrics.ts';
import type { Config } from './config.ts';
import type { Database } from './db/types.ts';
import type { EmbeddingResolver } from './embeddings/resolver.ts';
import type { AnswerServices } from './answer/services.ts';
import type { MetricsRegistry } from './metrics.ts';
import type { JobQueue } from '../contracts/queue.ts';
import type { AuthFailureStore } from './auth-failure-store.ts';
import type { Log } from '../contracts/log.ts';
import type { BlobStore } from '../contracts/blob-store.ts';

/** What the /v1 resource routes need. */
export interface ApiServices {
  db: Database;
  /** Raw uploads live here under `uploads/<tenant>/<collection>/<sha256>`. */
  blobs: BlobStore;
  /** The providers this deployment offers collections (src/embeddings/resolver.ts). */
  embeddings: EmbeddingResolver;
  /**
   * Job status lookups (GET /v1/jobs). Absent at the edge, where jobs only reach the queue through the
   * outbox relay: the route then reports what the outbox knows.
   */
  jobs?: Pick<JobQueue, 'getJob'>;
  /** Runners, served models and the answer cache for /v1/query, /v1/chat/completions, /v1/models. */
  answer?: AnswerServices;
  /** The clock (tests may pin it). */
  now?: () => Date;
}

/**
 * The web console's built files (src/console, built by Vite into dist/console). Absent where the platform
 * serves them itself (Workers static assets) or where they were not built.
 */
export interface StaticAssets {
  /** A file by its path in the build (`index.html`, `assets/index-1a2b3c.js`); null when absent. */
  get(path: string): Promise<Uint8Array | null>;
}

export interface Services {
  config: Config;
  /** Readiness checks by component name (database, blobs, queue, runner); each throws when not ready. */
  readiness: Record<string, () => Promise<void>>;
  log?: Log;
  /** Failed-authentication counters (Redis when configured); absent: in memory, per app. */
  authFailures?: AuthFailureStore;
  /**
   * The process's metrics, served on GET /metrics (the API adds its own; the embedded serve adds the
   * workers'). Absent: the app keeps its own registry.
   */
  metrics?: MetricsRegistry;
  /** The console's files, served at / (Node); absent: / says how to build them. */
  assets?: StaticAssets;
  /** Absent in a process that serves health only; /v1 routes then answer 503 `unavailable`. */
  api?: ApiServices;
}

/** Who made the request, set by the auth middleware: the operator's admin key, or a tenant's API key. */
export type Principal = { kind: 'admin' } | { kind: 'tenant'; tenantId: string; keyId: string };

export type AppEnv = {
  Variables: { requestId: string; services: Services; principal: Principal; metrics: ApiMetrics };
};
