// Artifact garbage collection and the precompute-done consumer on real components: PGlite served over the
// wire (postgres.js), a filesystem blob store, and s3rver for the S3 protocol. Handlers are called directly
// (the queue path is covered by ingest-workers.test.ts).
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDb, type DbHandle } from '../../src/db/client.ts';
import { chunks, documents, kvArtifacts } from '../../src/db/schema.ts';
import { createEmbeddingResolver } from '../../src/embeddings/resolver.ts';
import { uploadKey } from '../../src/storage/upload-keys.ts';
import type { BlobStore } from '../../contracts/blob-store.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { S3BlobStore } from '../../src/storage/s3.ts';
import type { WorkerDeps } from '../../workers/deps.ts';
import { handleGc, sweepArtifacts } from '../../workers/gc.ts';
import { handleIngest } from '../../workers/ingest.ts';
import { handlePrecomputeDone } from '../../workers/precompute-done.ts';
import { loadServingModel, type ServingModel } from '../../workers/serving-model.ts';
import { insertChunks, rng, type Seeded, seedDocument, sha256, unitVector } from '../helpers/db-fixtures.ts';
import { type PgliteServer, startPgliteServer, TEST_POOL } from '../helpers/pglite-server.ts';
import { type S3TestServer, startS3 } from '../helpers/s3-server.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';

const FP = 'a'.repeat(64);
const OTHER_FP = 'b'.repeat(64);
const objectKeyOf = (fp: string, hash: string) => `kv/${fp}/${hash.slice(0, 2)}/${hash}.kv`;

describe('artifact gc and precompute-done (PGlite wire, fs blobs, s3rver)', () => {
  let pg: PgliteServer;
  let db: DbHandle;
  let dir: string;
  let fsBlobs: FsBlobStore;
  let models: TinyModels;
  let model: ServingModel;

  beforeAll(async () => {
    models = tinyModels();
    pg = await startPgliteServer();
    db = createPostgresDb(pg.url, TEST_POOL);
    dir = await mkdtemp(join(tmpdir(), 'kvrag-gc-'));
    fsBlobs = new FsBlobStore(dir);
    model = loadServingModel(models.make('m'));
  });
  afterAll(async () => {
    await db?.close();
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
    models?.cleanup();
  });

  const depsFor = (blobs: BlobStore): WorkerDeps => ({
    db: db.db,
    blobs,
    embeddings: createEmbeddingResolver(),
    model: { ...model, fingerprint: FP },
  });

  /** A document with chunks `texts` (hash embedding-sized random vectors). */
  const seed = async (texts: string[], name = randomUUID()): Promise<Seeded> => {
    const s = await seedDocument(db.db, 256, name);
    const next = rng(texts.length);
    await insertChunks(
      db.db,
      s,
      texts,
      texts.map(() => unitVector(256, next)),
    );
    return s;
  };

  /** A ready artifact row for `text` under `fp`, with its object in `blobs`. */
  const artifact = async (blobs: BlobStore, fp: string, text: string, lastUsedAgo?: string) => {
    const h = sha256(text);
    const key = objectKeyOf(fp, h);
    await blobs.put(key, new TextEncoder().encode(`kv:${text}`));
    await db.db.insert(kvArtifacts).values({
      chunkHash: h,
      modelFingerprint: fp,
      objectKey: key,
      bytes: 3 + text.length,
      formatVersion: 1,
      status: 'ready',
      lastUsedAt: lastUsedAgo ? sql`now() - ${lastUsedAgo}::interval` : null,
    });
    return { hash: h, key };
  };

  const artifactHashes = async () =>
    (await db.db.select({ h: kvArtifacts.chunkHash, fp: kvArtifacts.modelFingerprint }).from(kvArtifacts))
      .map((r) => `${r.fp.slice(0, 1)}:${r.h}`)
      .sort();

  const exists = async (blobs: BlobStore, key: string) => (await blobs.head(key)) !== null;

  it('gc job: deletes upload blobs and the artifacts of its hashes that no chunk references, keeps referenced ones', async () => {
    const texts = [`alpha ${randomUUID()}`, `beta ${randomUUID()}`];
    const s = await seed(texts);
    const gamma = `gamma ${randomUUID()}`;
    const a = await artifact(fsBlobs, FP, texts[0]);
    const aOther = await artifact(fsBlobs, OTHER_FP, texts[0]);
    const g = await artifact(fsBlobs, FP, gamma);
    const gOther = await artifact(fsBlobs, OTHER_FP, gamma);
    const upload = uploadKey(s.tenantId, s.collectionId, s.documentId);
    await fsBlobs.put(upload, new TextEncoder().encode('raw'));

    const r = await handleGc(depsFor(fsBlobs), {
      v: 1,
      tenantId: s.tenantId,
      collectionId: s.collectionId,
      documentId: s.documentId,
      blobKeys: [upload],
      chunkHashes: [a.hash, g.hash],
    });
    expect(r).toMatchObject({ blobsDeleted: 1, artifactsDeleted: 2 });
    expect(await exists(fsBlobs, upload)).toBe(false);
    // gamma (unreferenced) goes under every model; alpha (a chunk still has it) stays under every model
    for (const k of [g.key, gOther.key]) expect(await exists(fsBlobs, k)).toBe(false);
    for (const k of [a.key, aOther.key]) expect(await exists(fsBlobs, k)).toBe(true);
    const left = await artifactHashes();
    expect(left).toContain(`a:${a.hash}`);
    expect(left).toContain(`b:${a.hash}`);
    expect(left).not.toContain(`a:${g.hash}`);
    expect(left).not.toContain(`b:${g.hash}`);

    // again: idempotent
    expect(
      await handleGc(depsFor(fsBlobs), {
        v: 1,
        tenantId: s.tenantId,
        collectionId: s.collectionId,
        blobKeys: [upload],
        chunkHashes: [a.hash, g.hash],
      }),
    ).toMatchObject({ artifactsDeleted: 0 });
  });

  it('gc job: refuses a blob prefix outside its tenant', async () => {
    await expect(
      handleGc(depsFor(fsBlobs), {
        v: 1,
        tenantId: randomUUID(),
        collectionId: randomUUID(),
        blobPrefix: 'kv/',
      }),
    ).rejects.toMatchObject({ name: 'UnrecoverableJobError' });
  });

  it('sweep: unreferenced artifacts after the grace period, idle ones when configured, orphan objects', async () => {
    await db.db.delete(kvArtifacts);
    for await (const b of fsBlobs.list('kv/')) await fsBlobs.delete(b.key);
    const texts = [`kept ${randomUUID()}`, `idle ${randomUUID()}`];
    await seed(texts);
    const kept = await artifact(fsBlobs, FP, texts[0], '1 hour');
    const idle = await artifact(fsBlobs, FP, texts[1], '3 days');
    const loose = await artifact(fsBlobs, FP, `loose ${randomUUID()}`);
    const orphanKey = objectKeyOf(FP, sha256(`orphan ${randomUUID()}`));
    await fsBlobs.put(orphanKey, new TextEncoder().encode('no row names me'));
    const deps = depsFor(fsBlobs);

    // everything is younger than the grace period: nothing goes
    expect(await sweepArtifacts(deps, { graceMs: 60_000 })).toMatchObject({
      artifactsDeleted: 0,
      orphanObjectsDeleted: 0,
    });
    expect(await exists(fsBlobs, orphanKey)).toBe(true);

    // no grace: the unreferenced artifact and the orphan object go; referenced ones stay (no expiry set)
    expect(await sweepArtifacts(deps, { graceMs: 0 })).toMatchObject({
      artifactsDeleted: 1,
      orphanObjectsDeleted: 1,
    });
    expect(await exists(fsBlobs, loose.key)).toBe(false);
    expect(await exists(fsBlobs, orphanKey)).toBe(false);
    expect(await artifactHashes()).toEqual([`a:${kept.hash}`, `a:${idle.hash}`].sort());

    // expiry by last use: the artifact unused for 3 days goes although a chunk references it (the chunk
    // stays); the one used an hour ago stays
    expect(await sweepArtifacts(deps, { graceMs: 0, maxIdleMs: 24 * 3600_000 })).toMatchObject({
      artifactsDeleted: 1,
    });
    expect(await artifactHashes()).toEqual([`a:${kept.hash}`]);
    expect(await exists(fsBlobs, idle.key)).toBe(false);
    expect(await exists(fsBlobs, kept.key)).toBe(true);
    expect((await db.db.select().from(chunks).where(eq(chunks.contentHash, idle.hash))).length).toBe(1);
  });

  it('precompute-done: upserts artifacts idempotently, readies complete documents, fails on a runner error', async () => {
    const shared = `shared ${randomUUID()}`;
    const d1 = await seed([shared, `one ${randomUUID()}`]);
    const d2 = await seed([shared, `two ${randomUUID()}`]);
    const d3 = await seed([`three ${randomUUID()}`]);
    await db.db.update(documents).set({ status: 'precomputing' });
    const hashesOf = async (s: Seeded) =>
      (
        await db.db.select().from(chunks).where(eq(chunks.documentId, s.documentId)).orderBy(chunks.ordinal)
      ).map((c) => c.contentHash);
    const [h1, h2, h3] = [await hashesOf(d1), await hashesOf(d2), await hashesOf(d3)];
    const statusOf = async (s: Seeded) =>
      (await db.db.select().from(documents).where(eq(documents.id, s.documentId)))[0];
    const deps = depsFor(fsBlobs);
    const done = (hs: string[], fp = FP, failed: { chunkHash: string; error: string }[] = []) =>
      handlePrecomputeDone(deps, {
        v: 1,
        modelFingerprint: fp,
        artifacts: hs.map((h) => ({
          chunkHash: h,
          objectKey: objectKeyOf(fp, h),
          bytes: 100,
          formatVersion: 1,
        })),
        failed,
      });

    // the shared chunk alone completes neither document
    expect(await done([h1[0]])).toMatchObject({ artifacts: 1, ready: [], failed: [] });
    // another model's artifacts are recorded but move no document
    expect(await done([h1[1], h2[1]], OTHER_FP)).toMatchObject({ ready: [] });
    expect((await statusOf(d1)).status).toBe('precomputing');
    // d1's last chunk: d1 ready, d2 still waiting
    expect(await done([h1[1]])).toMatchObject({ ready: [d1.documentId] });
    expect((await statusOf(d2)).status).toBe('precomputing');
    // redelivery: no new row, no document moved twice
    const rows = (await db.db.select().from(kvArtifacts)).length;
    expect(await done([h1[1]])).toMatchObject({ ready: [] });
    expect((await db.db.select().from(kvArtifacts)).length).toBe(rows);
    // d2 completes; d3's chunk fails on the runner → d3 failed with the runner's error
    const r = await done([h2[1]], FP, [{ chunkHash: h3[0], error: 'out of memory' }]);
    expect(r).toMatchObject({ ready: [d2.documentId], failed: [d3.documentId] });
    expect((await statusOf(d2)).status).toBe('ready');
    const f = await statusOf(d3);
    expect(f.status).toBe('failed');
    expect(f.error).toContain('out of memory');
  });

  describe('on S3 (s3rver)', () => {
    let s3: S3TestServer;
    let blobs: S3BlobStore;
    beforeAll(async () => {
      s3 = await startS3();
      blobs = new S3BlobStore({ ...s3, forcePathStyle: true });
    });
    afterAll(async () => {
      await blobs?.close?.();
      await s3?.stop();
    });

    it('ingests a document whose upload lives in S3, then gc deletes its upload and artifact objects', async () => {
      const s = await seedDocument(db.db, 384, `s3-${randomUUID()}`);
      const text = 'Stored in S3. The worker reads it back, chunks it and embeds it.';
      const key = uploadKey(s.tenantId, s.collectionId, s.documentId);
      await blobs.put(key, new TextEncoder().encode(text));
      await db.db.update(documents).set({ objectKey: key }).where(eq(documents.id, s.documentId));
      // the fixture's collection names a hash model the resolver does not offer: use the real one
      const deps = depsFor(blobs);
      await db.db.execute(
        sql`update collections set embedding_model = ${createEmbeddingResolver()({ provider: 'hash', dimension: 384 }).model} where id = ${s.collectionId}`,
      );
      const r = await handleIngest(
        deps,
        {
          v: 1,
          tenantId: s.tenantId,
          collectionId: s.collectionId,
          documentId: s.documentId,
          objectKey: key,
          contentType: 'text/plain',
          filename: 'seed.txt',
        },
        { id: 'x', attempt: 1, signal: new AbortController().signal },
      );
      expect(r).toMatchObject({ outcome: 'indexed', status: 'precomputing', chunks: 1 });
      const [c] = await db.db.select().from(chunks).where(eq(chunks.documentId, s.documentId));
      expect(c.text).toBe(text);

      const art = await artifact(blobs, FP, text);
      expect(await exists(blobs, art.key)).toBe(true);
      await db.db.delete(documents).where(eq(documents.id, s.documentId));
      const g = await handleGc(deps, {
        v: 1,
        tenantId: s.tenantId,
        collectionId: s.collectionId,
        blobPrefix: `uploads/${s.tenantId}/`,
        chunkHashes: [c.contentHash],
      });
      expect(g).toMatchObject({ blobsDeleted: 1, artifactsDeleted: 1 });
      expect(await exists(blobs, key)).toBe(false);
      expect(await exists(blobs, art.key)).toBe(false);
    });
  });
});
