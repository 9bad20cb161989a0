// Builds the API's services on Cloudflare Workers from the Worker's env (bindings, vars, secrets): the edge
// mode of DESIGN.md §3. Postgres through the Hyperdrive binding (postgres.js with named prepared
// statements, a small pool created per request and closed after the response), blobs in the R2 bucket
// binding (else S3 settings), Workers AI embeddings through the AI binding, answers from the runners of
// KVRAG_RUNNER_URLS (src/answer-services.ts: pool, served models and answer cache built once per isolate;
// every call carries KVRAG_RUNNER_TOKEN). Each request records the artifacts its answer used
// (kv_artifacts.last_used_at, which the gc's --artifact-max-idle expiry reads) on its own database client,
// written when the request closes. Jobs reach the queue only through the outbox the routes write; a Node
// `kvrag relay` moves them on. Nothing here may import a Node-only module (test/e2e/workers-edge.test.ts
// checks wrangler's bundle).
import { sql } from 'drizzle-orm';
import { answerServices, remoteRunners } from './answer-services.ts';
import { ArtifactUse } from './answer/artifact-use.ts';
import type { AnswerServices } from './answer/services.ts';
import { blobStoreSpec, type Config, loadConfig } from './config.ts';
import { createPostgresDb } from './db/postgres.ts';
import type { DbHandle } from './db/types.ts';
import { createEmbeddingResolver } from './embeddings/resolver.ts';
import type { WorkersAiBinding } from './embeddings/workers-ai.ts';
import type { Log, LogLevel } from '../contracts/log.ts';
import type { Services } from './services.ts';
import type { BlobStore } from '../contracts/blob-store.ts';
import { type R2BucketLike, R2BlobStore } from './storage/r2.ts';

/**
 * The Worker's env: the bindings named in wrangler.toml plus every KVRAG_* var and secret as a string.
 * Binding shapes are declared structurally (no @cloudflare/workers-types needed).
 */
export interface WorkerEnv {
  /** Hyperdrive config in front of Postgres (pgvector); absent = KVRAG_DATABASE_URL, direct. */
  HYPERDRIVE?: { connectionString: string };
  /** R2 bucket for uploads; absent = KVRAG_BLOB_STORE=s3 with the KVRAG_S3_* settings. */
  BLOBS?: R2BucketLike;
  /** Workers AI, offered to collections as the `workers-ai` embedding provider when bound. */
  AI?: WorkersAiBinding;
  [name: string]: unknown;
}

/** Connections per request: Hyperdrive pools for real, so a request needs only a few of its own. */
const POOL_PER_REQUEST = 5;

const ORDER: Record<LogLevel | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** One JSON object per line through console (Workers Logs index JSON fields). */
export function consoleLogger(level: LogLevel | 'silent', base: Record<string, unknown> = {}): Log {
  const min = ORDER[level];
  return (lvl, msg, fields) => {
    if (ORDER[lvl] < min) return;
    const line = JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...base, ...fields });
    if (lvl === 'error') console.error(line);
    else if (lvl === 'warn') console.warn(line);
    else console.log(line);
  };
}

// Vars and secrets are fixed for an isolate's env object, so the parsed configuration is kept per env.
const configs = new WeakMap<object, Config>();

/** loadConfig over the env's string entries (vars and secrets), once per env object. Throws ConfigError. */
export function workerConfig(env: WorkerEnv): Config {
  let config = configs.get(env);
  if (!config) {
    config = loadConfig(env);
    configs.set(env, config);
  }
  return config;
}

// Runner pool (its health polls), served models and answer cache, shared by an isolate's requests; keyed
// like the configuration. null: no KVRAG_RUNNER_URLS, so the answer routes answer 503.
const answers = new WeakMap<object, AnswerServices | null>();

/** The isolate's answer services from KVRAG_RUNNER_URLS and KVRAG_RUNNER_TOKEN; undefined without runners. */
export function workerAnswer(env: WorkerEnv, config: Config): AnswerServices | undefined {
  let answer = answers.get(env);
  if (answer === undefined) {
    const remote = remoteRunners(config, consoleLogger(config.logLevel, { service: 'kvrag-edge' }));
    answer = remote ? answerServices(config, remote.source) : null;
    answers.set(env, answer);
  }
  return answer ?? undefined;
}

async function openBlobs(env: WorkerEnv, config: Config): Promise<BlobStore> {
  if (env.BLOBS) return new R2BlobStore(env.BLOBS);
  if (blobStoreSpec(config) === 's3') {
    // Evaluated only when chosen; the bundle still carries the AWS SDK (0.8 of its 2.1 MB).
    const { S3BlobStore } = await import('./storage/s3.ts');
    return new S3BlobStore({
      bucket: config.s3Bucket!,
      endpoint: config.s3Endpoint,
      region: config.s3Region,
      accessKeyId: config.s3AccessKeyId,
      secretAccessKey: config.s3SecretAccessKey,
      forcePathStyle: config.s3ForcePathStyle,
    });
  }
  throw new Error(
    'no blob store: bind an R2 bucket as BLOBS, or set KVRAG_BLOB_STORE=s3 and the KVRAG_S3_* settings',
  );
}

export interface WorkerServices {
  services: Services;
  /**
   * Writes the artifact use the request noted, then ends its database client; the entry hands it to
   * ctx.waitUntil once the response body has been sent.
   */
  close(): Promise<void>;
}

/**
 * Services for one request. The database client is created here, per request as Hyperdrive advises
 * (never shared across requests), and closed by the caller after the response.
 * A deployment missing its database or blob store still answers /healthz; /readyz names what is missing
 * and /v1 answers 503.
 */
export async function openWorkerServices(env: WorkerEnv, config: Config): Promise<WorkerServices> {
  const log = consoleLogger(config.logLevel, { service: 'kvrag-edge' });
  const url = env.HYPERDRIVE?.connectionString ?? config.databaseUrl;
  let db: DbHandle | undefined;
  let blobs: BlobStore | undefined;
  let missing: string | undefined;
  try {
    if (!url) throw new Error('no database: bind Hyperdrive as HYPERDRIVE, or set KVRAG_DATABASE_URL');
    blobs = await openBlobs(env, config);
    db = createPostgresDb(url, { max: POOL_PER_REQUEST, prepare: true });
  } catch (err) {
    missing = (err as Error).message;
    log('error', 'edge API not configured', { reason: missing });
  }
  const readiness: Services['readiness'] = {};
  if (missing) {
    const reason = missing;
    readiness.configuration = async () => {
      throw new Error(reason);
    };
  }
  if (db) {
    const d = db.db;
    readiness.database = async () => {
      await d.execute(sql`select 1`);
    };
  }
  if (blobs) {
    const b = blobs;
    readiness.blobs = async () => {
      await b.head('readyz-probe');
    };
  }
  const shared = workerAnswer(env, config);
  // per request, on the request's client: no timer, written by close() (a Worker keeps no batch across
  // requests — an isolate may be evicted at any time — so each answer's use is one UPDATE)
  const artifactUse = db && shared ? new ArtifactUse(db.db, { flushEveryMs: 0, log }) : undefined;
  const api =
    db && blobs
      ? {
          db: db.db,
          blobs,
          embeddings: createEmbeddingResolver({ ai: env.AI }),
          ...(shared ? { answer: { ...shared, artifactUse } } : {}),
        }
      : undefined;
  const handle = db;
  return {
    services: { config, log, readiness, api },
    async close() {
      await artifactUse?.close();
      await handle
        ?.close()
        .catch((err: unknown) => log('warn', 'closing the database client failed', { err: String(err) }));
    },
  };
}
