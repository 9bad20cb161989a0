// Builds the API's services on Node from configuration: embedded (PGlite, filesystem blobs, in-process
// queue) or distributed (Postgres, S3, BullMQ), whichever the settings name. Embedded mode migrates its
// own database on start; a server database is migrated by `kvrag migrate` (one step of a deployment).
import { sql } from 'drizzle-orm';
import type { Config } from './config.ts';
import { type DbHandle, openDatabase } from './db/client.ts';
import { migrateDatabase } from './db/migrate.ts';
import { createEmbeddingResolver } from './embeddings/resolver.ts';
import { jsonLogger } from './log.ts';
import { MetricsRegistry } from './metrics.ts';
import { openQueue } from './queue/open.ts';
import { consoleAssets } from './static-assets.ts';
import type { JobQueue } from '../contracts/queue.ts';
import type { Services } from './services.ts';
import type { BlobStore } from '../contracts/blob-store.ts';
import { openBlobStore } from './storage/open.ts';

export interface NodeServices extends Services {
  db: DbHandle;
  blobs: BlobStore;
  /** BullMQ when KVRAG_REDIS_URL is set, else the in-process queue. */
  queue: JobQueue;
  /** This process's metrics: the API's, and the workers' where they run here. */
  metrics: MetricsRegistry;
  close(): Promise<void>;
}

export async function openNodeServices(config: Config): Promise<NodeServices> {
  const log = jsonLogger(config.logLevel, { service: 'kvrag' });
  const closers: (() => Promise<void>)[] = [];
  try {
    const db = await openDatabase(config);
    closers.push(() => db.close());
    if (db.kind === 'pglite') {
      const applied = await migrateDatabase(db);
      if (applied.length) log('info', 'migrated embedded database', { applied });
    }
    const blobs = await openBlobStore(config);
    if (blobs.close) closers.push(() => blobs.close!());
    const queue = await openQueue(config, log);
    closers.push(() => queue.close());
    // failed-auth counters shared by every API process when there is a Redis (else in memory, per app)
    const authFailures = config.redisUrl
      ? new (await import('./auth-failures-redis.ts')).RedisAuthFailures(config.redisUrl)
      : undefined;
    if (authFailures) {
      closers.push(() => authFailures.close());
      // until connected, failures are not counted (the guard lets requests through): start counted
      if (!(await authFailures.ready())) log('warn', 'auth failure counters: redis not reachable yet');
    }
    return {
      config,
      log,
      db,
      blobs,
      queue,
      authFailures,
      metrics: new MetricsRegistry(),
      assets: consoleAssets(),
      api: { db: db.db, blobs, embeddings: createEmbeddingResolver(), jobs: queue },
      readiness: {
        database: async () => {
          await db.db.execute(sql`select 1`);
        },
        blobs: async () => {
          await blobs.head('readyz-probe');
        },
        queue: async () => {
          await queue.counts('ingest');
        },
      },
      async close() {
        for (const c of closers.reverse()) await c();
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => {});
    throw err;
  }
}
