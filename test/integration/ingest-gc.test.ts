// Artifact garbage collection and the precompute-done consumer on real components: PGlite served over the
// wire (postgres.js), a filesystem blob store, and s3rver for the S3 protocol. Handlers are called directly
// (the queue path is covered by ingest-workers.test.ts).
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq, inArray, sql } from 'drizzle-orm';
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
import { storeTinyArtifact } from '../helpers/artifact-runner.ts';
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

  it('gc deletes only under the prefixes it owns: blob keys of other tenants and rows naming non-artifact keys', async () => {
    const victim = await seed([`victim text ${randomUUID()}`]);
    const theirUpload = uploadKey(victim.tenantId, victim.collectionId, victim.documentId);
    await fsBlobs.put(theirUpload, new TextEncoder().encode('their raw upload'));
    // a gc job of one tenant naming another tenant's upload is refused before anything is deleted
    const attacker = randomUUID();
    await expect(
      handleGc(depsFor(fsBlobs), {
        v: 1,
        tenantId: attacker,
        collectionId: randomUUID(),
        blobKeys: [uploadKey(attacker, randomUUID(), randomUUID()), theirUpload],
      }),
    ).rejects.toMatchObject({ name: 'UnrecoverableJobError' });
    await expect(
      handleGc(depsFor(fsBlobs), {
        v: 1,
        tenantId: attacker,
        collectionId: randomUUID(),
        blobKeys: [`uploads/${attacker}/../${victim.tenantId}/${victim.collectionId}/${victim.documentId}`],
      }),
    ).rejects.toMatchObject({ name: 'UnrecoverableJobError' });
    expect(await exists(fsBlobs, theirUpload)).toBe(true);
    // an unreferenced artifact row whose object key is that upload (written before claims were checked):
    // the row goes, the upload stays
    const h = sha256(`unreferenced ${randomUUID()}`);
    await db.db.insert(kvArtifacts).values({
      chunkHash: h,
      modelFingerprint: FP,
      objectKey: theirUpload,
      bytes: 10,
      formatVersion: 1,
      status: 'ready',
    });
    expect(
      await handleGc(depsFor(fsBlobs), {
        v: 1,
        tenantId: attacker,
        collectionId: randomUUID(),
        chunkHashes: [h],
      }),
    ).toMatchObject({ artifactsDeleted: 1 });
    expect(await db.db.select().from(kvArtifacts).where(eq(kvArtifacts.chunkHash, h))).toEqual([]);
    expect(await exists(fsBlobs, theirUpload)).toBe(true);
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

  it('sweep: upload blobs no document names (their transaction never committed) go after the grace period', async () => {
    const s = await seed([`kept upload ${randomUUID()}`]);
    const kept = uploadKey(s.tenantId, s.collectionId, s.documentId);
    await db.db.update(documents).set({ objectKey: kept }).where(eq(documents.id, s.documentId));
    const orphan = uploadKey(s.tenantId, s.collectionId, randomUUID());
    // a row without object_key still owns the blob at its own upload key
    const legacy = await seed([`legacy upload ${randomUUID()}`]);
    const legacyKey = uploadKey(legacy.tenantId, legacy.collectionId, legacy.documentId);
    for (const k of [kept, orphan, legacyKey]) await fsBlobs.put(k, new TextEncoder().encode('raw upload'));
    // within the grace period nothing goes (an upload may be about to commit its row)
    expect((await sweepArtifacts(depsFor(fsBlobs), { graceMs: 3600_000 })).orphanUploadsDeleted).toBe(0);
    expect(await exists(fsBlobs, orphan)).toBe(true);
    expect((await sweepArtifacts(depsFor(fsBlobs), { graceMs: 0 })).orphanUploadsDeleted).toBe(1);
    expect(await exists(fsBlobs, orphan)).toBe(false);
    expect(await exists(fsBlobs, kept)).toBe(true);
    expect(await exists(fsBlobs, legacyKey)).toBe(true);
  });

  it('precompute-done: upserts artifacts idempotently, readies complete documents, fails on a runner error', async () => {
    const shared = `shared ${randomUUID()}`;
    const t1 = [shared, `one ${randomUUID()}`];
    const t2 = [shared, `two ${randomUUID()}`];
    const t3 = [`three ${randomUUID()}`];
    const d1 = await seed(t1);
    const d2 = await seed(t2);
    const d3 = await seed(t3);
    await db.db.update(documents).set({ status: 'precomputing' });
    const statusOf = async (s: Seeded) =>
      (await db.db.select().from(documents).where(eq(documents.id, s.documentId)))[0];
    const deps = depsFor(fsBlobs);
    // the runner's report of `texts`: each artifact really stored under its canonical key
    const done = async (
      texts: string[],
      opts: { fp?: string; failed?: { chunkHash: string; error: string }[]; documentIds?: string[] } = {},
    ) => {
      const fp = opts.fp ?? FP;
      const artifacts = [];
      for (const t of texts) {
        const stored = await storeTinyArtifact(fsBlobs, fp, model.tokenizer.encode(t));
        artifacts.push({ chunkHash: sha256(t), ...stored, formatVersion: 1 });
      }
      return handlePrecomputeDone(deps, {
        v: 1,
        modelFingerprint: fp,
        artifacts,
        failed: opts.failed ?? [],
        ...(opts.documentIds ? { documentIds: opts.documentIds } : {}),
      });
    };

    // the shared chunk alone completes neither document
    expect(await done([t1[0]])).toMatchObject({ artifacts: 1, ready: [], failed: [] });
    // another model's artifacts cannot be checked with this tokenizer: refused, nothing recorded or moved
    const other = await done([t1[1], t2[1]], { fp: OTHER_FP });
    expect(other).toMatchObject({ artifacts: 0, ready: [] });
    expect(other.refused.map((r) => r.reason)).toEqual([
      expect.stringMatching(/not the one/),
      expect.anything(),
    ]);
    expect((await statusOf(d1)).status).toBe('precomputing');
    // d1's last chunk: d1 ready, d2 still waiting
    expect(await done([t1[1]])).toMatchObject({ ready: [d1.documentId] });
    expect((await statusOf(d2)).status).toBe('precomputing');
    // redelivery: no new row, no document moved twice
    const rows = (await db.db.select().from(kvArtifacts)).length;
    expect(await done([t1[1]])).toMatchObject({ ready: [] });
    expect((await db.db.select().from(kvArtifacts)).length).toBe(rows);
    // d2 completes; d3's chunk fails on the runner → d3 failed; the tenant reads that the runner could not
    // compute it, not the runner's internals (those go to the log)
    const r = await done([t2[1]], {
      failed: [{ chunkHash: sha256(t3[0]), error: 'out of memory at 0x7f3a' }],
    });
    expect(r).toMatchObject({ ready: [d2.documentId], failed: [d3.documentId] });
    expect((await statusOf(d2)).status).toBe('ready');
    const f = await statusOf(d3);
    expect(f.status).toBe('failed');
    expect(f.error).toContain('could not compute');
    expect(f.error).not.toContain('out of memory');
  });

  it("precompute-done refuses forged claims: a key that is not the chunk's, an object that is not its artifact", async () => {
    const [victim, attacker] = [`victim ${randomUUID()}`, `attacker ${randomUUID()}`];
    const d = await seed([victim]);
    await seed([attacker]);
    await db.db.update(documents).set({ status: 'precomputing' }).where(eq(documents.id, d.documentId));
    const deps = depsFor(fsBlobs);
    const claim = (objectKey: string, bytes = 100) => ({
      chunkHash: sha256(victim),
      objectKey,
      bytes,
      formatVersion: 1,
    });
    const victimIds = model.tokenizer.encode(victim);
    const canonical = await storeTinyArtifact(fsBlobs, FP, victimIds);
    const theirs = await storeTinyArtifact(fsBlobs, FP, model.tokenizer.encode(attacker));
    const forged = [
      // the victim's chunk pointed at the attacker's artifact (answer poisoning)
      claim(theirs.objectKey),
      // ... or at any object at all (gc would later delete it)
      claim(uploadKey(d.tenantId, d.collectionId, d.documentId)),
      claim(`kv/${FP}/${sha256(victim).slice(0, 2)}/${sha256(victim)}.kv`),
      // a hash no chunk has
      { ...claim(canonical.objectKey), chunkHash: sha256(`nobody ${randomUUID()}`) },
    ];
    const r = await handlePrecomputeDone(deps, { v: 1, modelFingerprint: FP, artifacts: forged });
    expect(r.artifacts).toBe(0);
    expect(r.refused).toHaveLength(forged.length);
    expect(r.ready).toEqual([]);
    expect(
      await db.db
        .select()
        .from(kvArtifacts)
        .where(eq(kvArtifacts.chunkHash, sha256(victim))),
    ).toEqual([]);
    // the canonical key with garbage in it (not an artifact, or another chunk's bytes) is refused too
    await fsBlobs.put(canonical.objectKey, (await fsBlobs.get(theirs.objectKey))!);
    const swapped = await handlePrecomputeDone(deps, {
      v: 1,
      modelFingerprint: FP,
      artifacts: [claim(canonical.objectKey)],
    });
    expect(swapped.artifacts).toBe(0);
    expect(swapped.refused[0].reason).toMatch(/key/);
    // the real artifact is accepted, with the size it really has
    const real = await storeTinyArtifact(fsBlobs, FP, victimIds);
    const ok = await handlePrecomputeDone(deps, {
      v: 1,
      modelFingerprint: FP,
      artifacts: [claim(real.objectKey, 1)],
    });
    expect(ok).toMatchObject({ artifacts: 1, ready: [d.documentId] });
    const [row] = await db.db
      .select()
      .from(kvArtifacts)
      .where(eq(kvArtifacts.chunkHash, sha256(victim)));
    expect(row).toMatchObject({ objectKey: real.objectKey, bytes: real.bytes });
  });

  it('precompute-done moves only the documents its job names: another tenant holding the same text waits for its own', async () => {
    const text = `same text in two tenants ${randomUUID()}`;
    const a = await seed([text]);
    const b = await seed([text]);
    const waiting = (...ss: Seeded[]) =>
      db.db
        .update(documents)
        .set({ status: 'precomputing' })
        .where(
          inArray(
            documents.id,
            ss.map((x) => x.documentId),
          ),
        );
    await waiting(a, b);
    const deps = depsFor(fsBlobs);
    const stored = await storeTinyArtifact(fsBlobs, FP, model.tokenizer.encode(text));
    const report = (documentIds: string[], failed: { chunkHash: string; error: string }[] = []) =>
      handlePrecomputeDone(deps, {
        v: 1,
        modelFingerprint: FP,
        artifacts: failed.length ? [] : [{ chunkHash: sha256(text), ...stored, formatVersion: 1 }],
        failed,
        documentIds,
      });
    expect(await report([a.documentId])).toMatchObject({ ready: [a.documentId] });
    const statusOf = async (s: Seeded) =>
      (await db.db.select().from(documents).where(eq(documents.id, s.documentId)))[0].status;
    expect(await statusOf(b)).toBe('precomputing');
    expect(await report([b.documentId])).toMatchObject({ ready: [b.documentId] });
    // a failure reported for one tenant's document does not fail the other's
    const other = `failing text ${randomUUID()}`;
    const c = await seed([other]);
    const e = await seed([other]);
    await waiting(c, e);
    const failed = await report(
      [c.documentId],
      [{ chunkHash: sha256(other), error: 'token ids outside the vocabulary' }],
    );
    expect(failed.failed).toEqual([c.documentId]);
    expect(await statusOf(e)).toBe('precomputing');
    expect((await db.db.select().from(documents).where(eq(documents.id, c.documentId)))[0].error).toContain(
      'token ids outside the vocabulary',
    );
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
