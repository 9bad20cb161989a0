// The workers as the embedded `kvrag serve` runs them: in-process queue (MemoryJobQueue), outbox relay in
// the same process, PGlite (served over the wire, postgres.js) and filesystem blobs. stop() is graceful:
// a job that is running when it is called finishes and commits before stop() resolves.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type DbHandle } from '../../src/db/client.ts';
import { chunks, collections, documents, tenants } from '../../src/db/schema.ts';
import { createEmbeddingResolver } from '../../src/embeddings/resolver.ts';
import { AppError } from '../../contracts/errors.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import { scheduleIngest } from '../../src/queue/job-outbox.ts';
import { uploadKey } from '../../src/storage/upload-keys.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { startWorkers } from '../../workers/run.ts';
import { loadServingModel } from '../../workers/serving-model.ts';
import { sha256 } from '../helpers/db-fixtures.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';

describe('workers in-process (MemoryJobQueue, PGlite wire, fs blobs)', () => {
  let pg: PgliteServer;
  let db: DbHandle;
  let dir: string;
  let models: TinyModels;

  beforeAll(async () => {
    models = tinyModels();
    pg = await startPgliteServer();
    db = createPostgresDb(pg.url, TEST_POOL);
    dir = await mkdtemp(join(tmpdir(), 'kvrag-embedded-'));
  });
  afterAll(async () => {
    await db?.close();
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
    models?.cleanup();
  });

  /** A tenant + collection (chunks of 64 tokens) and a queued document with its ingest outbox row. */
  const queuedDocument = async (blobs: FsBlobStore, text: string): Promise<string> => {
    const [t] = await db.db.insert(tenants).values({ name: 'embedded' }).returning();
    const hash = createEmbeddingResolver()({ provider: 'hash', dimension: 256 });
    const [c] = await db.db
      .insert(collections)
      .values({
        tenantId: t.id,
        name: 'c',
        embeddingProvider: 'hash',
        embeddingModel: hash.model,
        embeddingDim: 256,
        chunkSettings: { size: 64, overlap: 0 },
      })
      .returning();
    const id = randomUUID();
    const objectKey = uploadKey(t.id, c.id, id);
    await blobs.put(objectKey, new TextEncoder().encode(text));
    await db.db.transaction(async (tx) => {
      await tx.insert(documents).values({
        id,
        tenantId: t.id,
        collectionId: c.id,
        filename: 'e.txt',
        contentType: 'text/plain',
        bytes: text.length,
        contentHash: sha256(text),
        objectKey,
      });
      await scheduleIngest(tx, {
        tenantId: t.id,
        collectionId: c.id,
        documentId: id,
        objectKey,
        contentType: 'text/plain',
        filename: 'e.txt',
      });
    });
    return id;
  };
  const statusOf = async (id: string) =>
    (await db.db.select().from(documents).where(eq(documents.id, id)))[0];

  it('stop() lets the running ingest finish and commit, then resolves', async () => {
    const blobs = new FsBlobStore(dir);
    const id = await queuedDocument(
      blobs,
      'An embedded deployment ingests this document in the same process. '.repeat(4),
    );

    // an embedder held at a gate: the job is running when stop() is called
    let entered!: () => void;
    const inside = new Promise<void>((r) => {
      entered = r;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const resolve = createEmbeddingResolver();
    const queue = new MemoryJobQueue();
    const workers = startWorkers(
      {
        db: db.db,
        blobs,
        model: loadServingModel(models.make('m')),
        embeddings: (choice) => {
          const inner = resolve(choice);
          return {
            id: inner.id,
            model: inner.model,
            dimension: inner.dimension,
            embed: async (texts, kind) => {
              entered();
              await gate;
              return inner.embed(texts, kind);
            },
          };
        },
      },
      queue,
      { relay: { idleMs: 20 }, sweepEveryMs: 0 },
    );
    await inside;
    let stopped = false;
    const stopping = workers.stop().then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect((await statusOf(id)).status).toBe('precomputing');
    expect((await db.db.select().from(chunks).where(eq(chunks.documentId, id))).length).toBeGreaterThan(1);
    expect((await queue.getJob('ingest', `ingest-${id}`))?.state).toBe('completed');
    await queue.close();
  });

  it('retries a transient embedding failure, showing the reason meanwhile, then completes', async () => {
    const blobs = new FsBlobStore(dir);
    const TEXT = 'A document whose embedder is away on the first try. ';
    const id = await queuedDocument(blobs, TEXT.repeat(3));
    const resolve = createEmbeddingResolver();
    let calls = 0;
    let errorSeen: string | null = null;
    const queue = new MemoryJobQueue();
    const workers = startWorkers(
      {
        db: db.db,
        blobs,
        model: loadServingModel(models.make('m')),
        embeddings: (choice) => {
          const inner = resolve(choice);
          return {
            id: inner.id,
            model: inner.model,
            dimension: inner.dimension,
            embed: async (texts, kind) => {
              // other tests' documents may be relayed again here (their rows are marked once finished)
              if (!texts[0].startsWith(TEXT)) return inner.embed(texts, kind);
              calls++;
              if (calls === 1)
                throw new AppError('upstream_unavailable', 'embedding server http://10.0.0.7:8000 is away');
              errorSeen = (await statusOf(id)).error;
              return inner.embed(texts, kind);
            },
          };
        },
      },
      queue,
      { relay: { idleMs: 20, optionsFor: () => ({ backoffMs: 50 }) }, sweepEveryMs: 0 },
    );
    try {
      await waitFor(async () => (await statusOf(id)).status === 'precomputing', 'precomputing');
    } finally {
      await workers.stop();
      await queue.close();
    }
    // the second try saw the first one's reason on the document; success cleared it
    // what the tenant reads names the kind of failure, not the internal address (that is logged)
    expect(errorSeen).toBe('retrying: an upstream service (such as the embedding provider) is unavailable');
    expect((await statusOf(id)).error).toBeNull();
    const job = await queue.getJob('ingest', `ingest-${id}`);
    expect(job).toMatchObject({ state: 'completed', attemptsMade: 2 });
  });

  it('leaves a document whose last try failed transiently to the reconciler, which fails it after its re-drives', async () => {
    const blobs = new FsBlobStore(dir);
    const id = await queuedDocument(blobs, 'A document whose embedder never comes back. '.repeat(3));
    const resolve = createEmbeddingResolver();
    const queue = new MemoryJobQueue();
    const workers = startWorkers(
      {
        db: db.db,
        blobs,
        model: loadServingModel(models.make('m')),
        embeddings: (choice) => ({
          ...resolve(choice),
          embed: async () => {
            throw new Error('connect ECONNREFUSED 10.0.0.7:8000');
          },
        }),
      },
      queue,
      {
        relay: { idleMs: 20, optionsFor: () => ({ attempts: 2, backoffMs: 20 }) },
        sweepEveryMs: 0,
        reconcile: { afterMs: 400, everyMs: 100, attempts: 1 },
      },
    );
    try {
      // the queue's two tries fail: the document stays where it was, saying so
      await waitFor(
        async () => (await queue.getJob('ingest', `ingest-${id}`))?.state === 'failed',
        'the first job to fail',
      );
      await waitFor(async () => (await statusOf(id)).error?.startsWith('2 tries failed'), 'the note');
      expect((await statusOf(id)).status).not.toBe('failed');
      // the reconciler re-drives it once (a job of its own), then gives up with the reason
      await waitFor(async () => (await statusOf(id)).status === 'failed', 'failed', 20_000);
    } finally {
      await workers.stop();
      await queue.close();
    }
    expect((await statusOf(id)).error).toBe(
      'not ready after 1 re-drives: no progress in embedding ' +
        '(last error: 2 tries failed, the reconciler retries later: an internal error)',
    );
    expect(await db.db.select().from(chunks).where(eq(chunks.documentId, id))).toEqual([]);
    expect(await queue.getJob('ingest', `ingest-${id}-r1`)).toMatchObject({
      state: 'failed',
      attemptsMade: 2,
    });
  });
});
