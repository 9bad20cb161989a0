// The ingestion workers end to end on real components: the API (PGlite served over the wire, reached with
// postgres.js; filesystem blobs) writes documents and outbox rows, the outbox relay and the consumers run
// on BullMQ over redis-server, the tokenizer and fingerprint are a real (tiny) model's. The test plays
// the runner: it consumes `precompute`, stores objects and emits `precompute-done`, as a runner would.
import { createHash, randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactObjectKey } from '../../contracts/artifacts.ts';
import { artifactKey } from '../../gpu-runner/engine/kv/artifact-format.ts';
import { queryRows } from '../../src/db/client.ts';
import { chunks, documents, kvArtifacts, outbox } from '../../src/db/schema.ts';
import { createEmbeddingResolver, type EmbeddingResolver } from '../../src/embeddings/resolver.ts';
import { chunkText } from '../../src/ingest/chunking.ts';
import { parseDocument } from '../../src/ingest/parse/index.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import type { IngestJob, PrecomputeJob } from '../../contracts/jobs.ts';
import type { JobContext } from '../../contracts/queue.ts';
import type { WorkerDeps } from '../../workers/deps.ts';
import { handleIngest } from '../../workers/ingest.ts';
import { PRECOMPUTE_BATCH } from '../../workers/precompute-jobs.ts';
import { uploadKey } from '../../src/storage/upload-keys.ts';
import { type RunningWorkers, startWorkers } from '../../workers/run.ts';
import { loadServingModel, type ServingModel } from '../../workers/serving-model.ts';
import { type Harness, startApiHarness } from '../helpers/api-harness.ts';
import { consumePrecompute } from '../helpers/artifact-runner.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';

const waitForValue = async <T>(check: () => Promise<T | null>, what: string): Promise<T> =>
  (await waitFor(check, what, 20_000)) as T;
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const ctx = (): JobContext => ({ id: 'test', attempt: 1, signal: new AbortController().signal });

/** ~40 chunks of 64 byte-tokens: more than two precompute batches. */
const LONG_TEXT = Array.from(
  { length: 30 },
  (_, i) =>
    `Paragraph ${i}: record R${1000 + i} has value ${(i * 7919) % 100000}. It links to record R${1001 + i}.\n\n`,
).join('');

describe('ingestion workers (API + PGlite wire + BullMQ/redis-server + fs blobs)', () => {
  let h: Harness;
  let redis: RedisTestServer;
  let models: TinyModels;
  let model: ServingModel;
  let queue: BullMqJobQueue;
  let workers: RunningWorkers;
  let tenant: { id: string; key: string };
  let collectionId: string;
  /** Statuses seen by the embedder and the blob store while a job ran, read through the database. */
  const seen: string[] = [];
  let deps: WorkerDeps;

  const statusOf = async (id: string) =>
    (await h.db.db.select().from(documents).where(eq(documents.id, id)))[0];

  beforeAll(async () => {
    models = tinyModels();
    [h, redis] = await Promise.all([startApiHarness(), startRedis()]);
    model = loadServingModel(models.make('m'));
    queue = new BullMqJobQueue({ url: redis.url, prefix: 'ingest-test' });
    tenant = await h.tenant('ingest');
    const col = await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
      key: tenant.key,
      json: {
        name: 'docs',
        embedding: { provider: 'hash', dimension: 256 },
        chunking: { size: 64, overlap: 8 },
      },
    });
    collectionId = col.id;

    // Real components, observed: the status the database holds when the blob is read and when embedding runs.
    const resolve = createEmbeddingResolver();
    const embeddings: EmbeddingResolver = (choice) => {
      const inner = resolve(choice);
      return {
        ...inner,
        id: inner.id,
        model: inner.model,
        dimension: inner.dimension,
        embed: async (texts, kind) => {
          const [r] = await queryRows<{ statuses: string }>(
            h.db.db,
            sql`select string_agg(distinct status, ',') as statuses from documents where status not in ('ready', 'failed', 'precomputing', 'queued')`,
          );
          seen.push(`embed:${r.statuses}`);
          return inner.embed(texts, kind);
        },
      };
    };
    const blobs = Object.create(h.blobs) as typeof h.blobs;
    blobs.get = async (key, range) => {
      const [r] = await queryRows<{ statuses: string }>(
        h.db.db,
        sql`select string_agg(distinct status, ',') as statuses from documents where status not in ('ready', 'failed', 'precomputing', 'queued')`,
      );
      seen.push(`get:${r.statuses}`);
      return h.blobs.get(key, range);
    };
    deps = { db: h.db.db, blobs, embeddings, model };
    // every status a document row takes, in order (test-only audit trigger)
    await h.db.db.execute(
      sql`create table status_log (seq bigserial primary key, document_id uuid, status text)`,
    );
    await h.db.db.execute(sql`create function log_status() returns trigger language plpgsql as $$
      begin
        if tg_op = 'INSERT' or new.status is distinct from old.status then
          insert into status_log (document_id, status) values (new.id, new.status);
        end if;
        return new;
      end $$`);
    await h.db.db.execute(
      sql`create trigger documents_status_log after insert or update on documents for each row execute function log_status()`,
    );
    workers = startWorkers(deps, queue, { relay: { idleMs: 50 }, sweepEveryMs: 0 });
  });

  afterAll(async () => {
    await workers?.stop();
    await queue?.close();
    await h?.close();
    await redis?.stop();
    models?.cleanup();
  });

  const upload = (json: Record<string, unknown>) =>
    h.expectJson<{ id: string; status: string }>(201, 'POST', `/v1/collections/${collectionId}/documents`, {
      key: tenant.key,
      json,
    });

  it('takes an upload from queued through parsing and embedding to precomputing, then ready on precompute-done', async () => {
    const doc = await upload({ text: LONG_TEXT, filename: 'records.txt' });
    expect(doc.status).toBe('queued');
    seen.length = 0;
    const pre = await waitForValue(async () => {
      const d = await statusOf(doc.id);
      return d.status === 'precomputing' ? d : null;
    }, 'precomputing');
    expect(pre.error).toBeNull();
    // each transition was committed while the job ran (observed from another connection)
    expect(seen).toContain('get:parsing');
    expect(seen).toContain('embed:embedding');

    // chunks: exactly what the chunker makes of the text with the model's tokenizer at the collection's settings
    const parsed = await parseDocument({
      data: new TextEncoder().encode(LONG_TEXT),
      filename: 'records.txt',
    });
    const expected = await chunkText(parsed.text, model.tokenizer, { size: 64, overlap: 8 });
    const rows = await h.db.db
      .select()
      .from(chunks)
      .where(eq(chunks.documentId, doc.id))
      .orderBy(chunks.ordinal);
    expect(rows.map((r) => r.text)).toEqual(expected.map((c) => c.text));
    expect(rows.length).toBeGreaterThan(2 * PRECOMPUTE_BATCH);
    const hash = createEmbeddingResolver()({ provider: 'hash', dimension: 256 });
    const vectors = await hash.embed(
      rows.map((r) => r.text),
      'document',
    );
    rows.forEach((r, i) => {
      expect(r.contentHash).toBe(sha256(r.text));
      expect(r.tokenCount).toBe(model.tokenizer.encode(r.text).length);
      expect(r.tokenCount).toBeLessThanOrEqual(64);
      expect(r.embeddingDim).toBe(256);
      expect(Math.max(...r.embedding.map((x, j) => Math.abs(x - vectors[i][j])))).toBeLessThan(1e-6);
    });
    // full-text column generated
    const [fts] = await queryRows<{ n: number }>(
      h.db.db,
      sql`select count(*)::int as n from chunks where document_id = ${doc.id} and tsv @@ plainto_tsquery('english', 'record')`,
    );
    expect(Number(fts.n)).toBeGreaterThan(0);

    // outbox: precompute jobs covering each distinct chunk once, in batches, with the model's token ids
    const jobs = (await h.db.db.select().from(outbox).where(eq(outbox.queue, 'precompute'))).map(
      (r) => r.payload as PrecomputeJob,
    );
    const mine = jobs.filter((j) => j.chunks.some((c) => c.documentId === doc.id));
    const distinct = [...new Set(rows.map((r) => r.contentHash))];
    expect(mine.length).toBe(Math.ceil(distinct.length / PRECOMPUTE_BATCH));
    const covered = mine.flatMap((j) => j.chunks);
    expect(covered.map((c) => c.chunkHash).sort()).toEqual([...distinct].sort());
    for (const j of mine) {
      expect(j.modelFingerprint).toBe(model.fingerprint);
      expect(j.chunks.length).toBeLessThanOrEqual(PRECOMPUTE_BATCH);
    }
    for (const c of covered) {
      const row = rows.find((r) => r.contentHash === c.chunkHash)!;
      expect(c.tokenIds).toEqual(model.tokenizer.encode(row.text));
    }

    // the relay delivered them to BullMQ; play the runner
    const stored = new Map<string, string>();
    const precomputed: string[][] = [];
    const runner = consumePrecompute(queue, h.blobs, (job) => {
      precomputed.push(job.chunks.map((c) => c.chunkHash));
      for (const c of job.chunks)
        stored.set(
          c.chunkHash,
          artifactObjectKey(
            job.modelFingerprint,
            artifactKey({ fingerprint: job.modelFingerprint, dtype: 'f16', tokenIds: c.tokenIds! }),
          ),
        );
    });
    try {
      await waitFor(async () => (await statusOf(doc.id)).status === 'ready', 'ready', 20_000);
      const arts = await h.db.db.select().from(kvArtifacts);
      expect(new Set(arts.map((a) => a.chunkHash))).toEqual(new Set(distinct));
      for (const a of arts) {
        expect(a).toMatchObject({ status: 'ready', modelFingerprint: model.fingerprint, formatVersion: 1 });
        expect(a.objectKey).toBe(stored.get(a.chunkHash));
        // the size recorded is the stored artifact's, read back by the consumer's check
        expect(a.bytes).toBe((await h.blobs.head(a.objectKey))!.size);
      }
      expect((await statusOf(doc.id)).error).toBeNull();
      const log = await queryRows<{ status: string }>(
        h.db.db,
        sql`select status from status_log where document_id = ${doc.id} order by seq`,
      );
      expect(log.map((r) => r.status)).toEqual([
        'queued',
        'parsing',
        'chunking',
        'embedding',
        'precomputing',
        'ready',
      ]);

      // a second document sharing all chunks but the last: only the missing artifact is precomputed
      precomputed.length = 0;
      const copy = await upload({ text: `${LONG_TEXT}One more line.`, filename: 'copy.txt' });
      await waitFor(async () => (await statusOf(copy.id)).status === 'ready', 'copy ready', 20_000);
      const copyRows = await h.db.db.select().from(chunks).where(eq(chunks.documentId, copy.id));
      const onlyCopy = [...new Set(copyRows.map((r) => r.contentHash))].filter((x) => !distinct.includes(x));
      expect(onlyCopy.length).toBeGreaterThan(0);
      expect(precomputed.flat().sort()).toEqual(onlyCopy.sort());

      // deleting the copy: the API writes a gc job; the worker removes its upload and the artifacts only
      // it referenced, and keeps the shared ones (the first document still references them)
      const copyDoc = await statusOf(copy.id);
      await h.expectJson(200, 'DELETE', `/v1/collections/${collectionId}/documents/${copy.id}`, {
        key: tenant.key,
      });
      await waitFor(
        async () => (await queue.getJob('gc', `gc-${copy.id}`))?.state === 'completed',
        'gc done',
      );
      expect(await h.blobs.head(copyDoc.objectKey!)).toBeNull();
      const kept = await h.db.db.select().from(kvArtifacts);
      expect(new Set(kept.map((a) => a.chunkHash))).toEqual(new Set(distinct));
      for (const x of onlyCopy) expect(await h.blobs.head(stored.get(x)!)).toBeNull();
      for (const x of distinct) expect(await h.blobs.head(stored.get(x)!)).not.toBeNull();

      // deleting the original: nothing references its artifacts any more → rows and objects go
      await h.expectJson(200, 'DELETE', `/v1/collections/${collectionId}/documents/${doc.id}`, {
        key: tenant.key,
      });
      await waitFor(async () => (await queue.getJob('gc', `gc-${doc.id}`))?.state === 'completed', 'gc done');
      expect(await h.db.db.select().from(kvArtifacts)).toEqual([]);
      for (const key of stored.values()) expect(await h.blobs.head(key)).toBeNull();
    } finally {
      await runner.close();
    }
  });

  it('no dedupe across tenants: identical text of another tenant is precomputed again for this one', async () => {
    const text = `${LONG_TEXT.slice(0, 600)}Cross-tenant marker ${randomUUID()}.`;
    const precomputed: string[] = [];
    const runner = consumePrecompute(queue, h.blobs, (job) => {
      precomputed.push(...job.chunks.map((c) => c.chunkHash));
    });
    try {
      const inTenant = async (who: { key: string }, name: string) => {
        const col = await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
          key: who.key,
          json: { name, embedding: { provider: 'hash', dimension: 256 }, chunking: { size: 64, overlap: 8 } },
        });
        const doc = await h.expectJson<{ id: string }>(201, 'POST', `/v1/collections/${col.id}/documents`, {
          key: who.key,
          json: { text, filename: 'same.txt' },
        });
        await waitFor(async () => (await statusOf(doc.id)).status === 'ready', `${name} ready`, 20_000);
        return doc.id;
      };
      const first = await inTenant(tenant, `first-${randomUUID().slice(0, 6)}`);
      const hashes = [
        ...new Set(
          (await h.db.db.select().from(chunks).where(eq(chunks.documentId, first))).map((c) => c.contentHash),
        ),
      ].sort();
      expect(precomputed.sort()).toEqual(hashes);
      // the same tenant again (another collection): its ready copy counts, nothing is computed
      precomputed.length = 0;
      const again = await inTenant(tenant, `again-${randomUUID().slice(0, 6)}`);
      expect(precomputed).toEqual([]);
      // another tenant: every chunk is precomputed for it, and its document waited in `precomputing`
      const other = await h.tenant(`other-${randomUUID().slice(0, 6)}`);
      const second = await inTenant(other, 'theirs');
      expect(precomputed.sort()).toEqual(hashes);
      const log = async (id: string) =>
        (
          await queryRows<{ status: string }>(
            h.db.db,
            sql`select status from status_log where document_id = ${id} order by seq`,
          )
        ).map((r) => r.status);
      expect(await log(second)).toEqual(await log(first));
      expect(await log(second)).toContain('precomputing');
      expect(await log(again)).not.toContain('precomputing');
    } finally {
      await runner.close();
    }
  });

  it('fails an unparseable document with the error, no chunks and no retries', async () => {
    const form = new FormData();
    form.set(
      'file',
      new Blob(['%PDF-1.4\nthis is not really a PDF\n%%EOF\n'], { type: 'application/pdf' }),
      'bad.pdf',
    );
    const res = await h.call('POST', `/v1/collections/${collectionId}/documents`, {
      key: tenant.key,
      body: form,
    });
    expect(res.status).toBe(201);
    const doc = (await res.json()) as { id: string };
    const failed = await waitForValue(async () => {
      const d = await statusOf(doc.id);
      return d.status === 'failed' ? d : null;
    }, 'failed');
    expect(failed.error).toMatch(/pdf/i);
    const log = await queryRows<{ status: string }>(
      h.db.db,
      sql`select status from status_log where document_id = ${doc.id} order by seq`,
    );
    expect(log.map((r) => r.status)).toEqual(['queued', 'parsing', 'failed']);
    expect(await h.db.db.select().from(chunks).where(eq(chunks.documentId, doc.id))).toEqual([]);
    const job = await waitForValue(async () => {
      const j = await queue.getJob('ingest', `ingest-${doc.id}`);
      return j?.state === 'failed' ? j : null;
    }, 'ingest job failed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toBe(failed.error);
  });

  /** A queued document written directly (no outbox row, so the running workers never see it). */
  const seedDoc = async (text: string, filename = 'seeded.txt'): Promise<IngestJob> => {
    const id = randomUUID();
    const objectKey = uploadKey(tenant.id, collectionId, id);
    const bytes = new TextEncoder().encode(text);
    await h.blobs.put(objectKey, bytes);
    await h.db.db.insert(documents).values({
      id,
      tenantId: tenant.id,
      collectionId,
      filename,
      contentType: 'text/plain',
      bytes: bytes.byteLength,
      contentHash: sha256(text),
      objectKey,
    });
    return {
      v: 1,
      tenantId: tenant.id,
      collectionId,
      documentId: id,
      objectKey,
      contentType: 'text/plain',
      filename,
    };
  };
  const precomputeJobsOf = async (documentId: string) =>
    (await h.db.db.select().from(outbox).where(eq(outbox.queue, 'precompute')))
      .filter((r) => (r.payload as PrecomputeJob).chunks.some((c) => c.documentId === documentId))
      .map((r) => r.jobId)
      .sort();

  it('re-running an ingest is idempotent: same chunks, same outbox jobs; a late repeat changes nothing', async () => {
    const job = await seedDoc(`${LONG_TEXT.slice(0, 900)} (rerun)`);
    const snapshot = async () => ({
      chunks: (
        await h.db.db
          .select()
          .from(chunks)
          .where(eq(chunks.documentId, job.documentId))
          .orderBy(chunks.ordinal)
      ).map((c) => [c.ordinal, c.contentHash, c.tokenCount]),
      jobs: await precomputeJobsOf(job.documentId),
    });
    const first = await handleIngest(deps, job, ctx());
    const before = await snapshot();
    expect(first).toMatchObject({ outcome: 'indexed', status: 'precomputing', chunks: before.chunks.length });
    expect(before.chunks.length).toBeGreaterThan(0);
    expect(before.jobs.length).toBeGreaterThan(0);
    // a repeated delivery after the ingest finished: nothing to do, the document stays where it is
    expect(await handleIngest(deps, job, ctx())).toEqual({ outcome: 'done', status: 'precomputing' });
    expect(await snapshot()).toEqual(before);
    // a retry of a try that died mid-way (the document still in a stage of ingest) does it all again
    await h.db.db.update(documents).set({ status: 'embedding' }).where(eq(documents.id, job.documentId));
    const again = await handleIngest(deps, job, ctx());
    expect(again).toEqual(first);
    expect(await snapshot()).toEqual(before);
    expect((await statusOf(job.documentId)).status).toBe('precomputing');
  });

  it('does nothing for a document deleted before or while its job runs', async () => {
    const gone = await seedDoc('A short document that is deleted before its ingest runs.');
    await h.db.db.delete(documents).where(eq(documents.id, gone.documentId));
    expect(await handleIngest(deps, gone, ctx())).toEqual({ outcome: 'deleted' });

    // deleted while embedding (after parsing and chunking): the chunk transaction finds no row
    const mid = await seedDoc('Deleted while embedding, after parsing and chunking.');
    const resolve = createEmbeddingResolver();
    const deleting: WorkerDeps = {
      ...deps,
      embeddings: (choice) => {
        const inner = resolve(choice);
        return {
          id: inner.id,
          model: inner.model,
          dimension: inner.dimension,
          embed: async (texts, kind) => {
            await h.db.db.delete(documents).where(eq(documents.id, mid.documentId));
            return inner.embed(texts, kind);
          },
        };
      },
    };
    expect(await handleIngest(deleting, mid, ctx())).toEqual({ outcome: 'deleted' });
    for (const j of [gone, mid]) {
      expect(await h.db.db.select().from(chunks).where(eq(chunks.documentId, j.documentId))).toEqual([]);
      expect(await precomputeJobsOf(j.documentId)).toEqual([]);
    }
  });

  it("treats a job naming another tenant's document as a deleted one", async () => {
    const job = await seedDoc('Tenant scoped document text for the ingest job.');
    const other = await h.tenant('other');
    expect(await handleIngest(deps, { ...job, tenantId: other.id }, ctx())).toEqual({ outcome: 'deleted' });
    expect((await statusOf(job.documentId)).status).toBe('queued');
    expect(await h.db.db.select().from(chunks).where(eq(chunks.documentId, job.documentId))).toEqual([]);
  });

  it('fails an empty-after-parsing document without retries, leaving no chunks', async () => {
    const job = await seedDoc('   \n\n   \n');
    await expect(handleIngest(deps, job, ctx())).rejects.toMatchObject({ name: 'UnrecoverableJobError' });
    const d = await statusOf(job.documentId);
    expect(d.status).toBe('failed');
    expect(d.error).toMatch(/no text|empty/);
    expect(await h.db.db.select().from(chunks).where(eq(chunks.documentId, job.documentId))).toEqual([]);
  });
});
