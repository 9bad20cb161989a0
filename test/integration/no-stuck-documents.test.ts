// Documents never stuck, with real components: the answer harness (API on PGlite over the wire, in-process
// workers on the in-process queue, a real runner on a tiny model with host and disk tiers):
// - delete → gc → identical re-upload: the runner's disk tier still holds the artifacts gc deleted from
//   the object store; precompute copies them back down instead of skipping them, and the document is ready;
// - answers write kv_artifacts.last_used_at (batched), so a hot artifact survives --artifact-max-idle
//   while an idle one is expired;
// - a precompute job reaching a runner of another model is left for a runner of its model, untried;
// - the reconciler re-drives a document whose jobs were lost, and fails one only after its re-drives.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq, inArray, isNull } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner } from '../../gpu-runner/server/runner.ts';
import { chunks, documents, kvArtifacts, outbox } from '../../src/db/schema.ts';
import { enqueueJob } from '../../contracts/jobs.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import { sweepArtifacts } from '../../workers/gc.ts';
import { reconcileOnce } from '../../workers/reconciler.ts';
import { type AnswerHarness, startAnswerHarness } from '../helpers/answer-harness.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

let h: AnswerHarness;
let key: string;

beforeAll(async () => {
  h = await startAnswerHarness();
  key = (await h.tenant('stuck')).key;
}, 120_000);
afterAll(async () => {
  await h?.close();
});

const TEXT =
  'Record 7: the gate code of depot seven is 1259. It is changed every spring by the quartermaster, ' +
  'who keeps the only written copy in the safe behind the map of the northern valleys.';

async function artifactsOf(documentId: string) {
  const cs = await h.db.db.select().from(chunks).where(eq(chunks.documentId, documentId));
  const hashes = [...new Set(cs.map((c) => c.contentHash))];
  return h.db.db.select().from(kvArtifacts).where(inArray(kvArtifacts.chunkHash, hashes));
}

describe('precompute ensures the object store holds the artifact', () => {
  it('delete → gc → identical re-upload reaches ready; the artifact objects are back', async () => {
    const { collection, document } = await h.ingest(key, TEXT, 'depot.txt');
    const before = await artifactsOf(document);
    expect(before.length).toBeGreaterThan(0);
    // the runner's disk tier holds each artifact (what made precompute skip them before)
    for (const a of before) expect(await h.blobs.head(a.objectKey)).not.toBeNull();

    await h.expectJson(200, 'DELETE', `/v1/collections/${collection}/documents/${document}`, { key });
    // gc (relayed from the delete's outbox row) removes the rows and the objects nothing references
    await waitFor(async () => {
      const rows = await h.db.db
        .select()
        .from(kvArtifacts)
        .where(
          inArray(
            kvArtifacts.objectKey,
            before.map((a) => a.objectKey),
          ),
        );
      const objects = await Promise.all(before.map((a) => h.blobs.head(a.objectKey)));
      return rows.length === 0 && objects.every((o) => o === null);
    }, 'gc to delete the artifacts');

    const again = await h.upload(key, collection, TEXT, 'depot.txt');
    const after = await artifactsOf(again);
    expect(after.map((a) => a.objectKey).sort()).toEqual(before.map((a) => a.objectKey).sort());
    for (const a of after) expect(await h.blobs.head(a.objectKey), a.objectKey).not.toBeNull();
  });
});

describe('last_used_at', () => {
  it('answers keep their artifacts from expiring as idle; an unused one expires', async () => {
    const hot = await h.ingest(
      key,
      'Record 11: the ferry to the eastern isle leaves at dawn from pier four.',
    );
    const cold = await h.ingest(
      key,
      'Record 12: the lighthouse keeper logs every ship that passes the cape.',
    );
    // both older than the idle limit, then only the hot one is used by an answer
    await new Promise((r) => setTimeout(r, 1200));
    const res = await h.call('POST', '/v1/query', {
      key,
      json: { question: 'When does the ferry leave?', collection_ids: [hot.collection], stream: false },
    });
    expect(res.status).toBe(200);
    // not written per request: nothing until the batch is flushed
    const [unflushed] = await artifactsOf(hot.document);
    expect(unflushed.lastUsedAt).toBeNull();
    expect(await h.artifactUse.flush()).toBeGreaterThan(0);
    const [used] = await artifactsOf(hot.document);
    expect(used.lastUsedAt).not.toBeNull();

    await sweepArtifacts(
      { db: h.db.db, blobs: h.blobs, embeddings: h.api.embeddings, model: h.model },
      { maxIdleMs: 1000, graceMs: 0 },
    );
    const kept = await artifactsOf(hot.document);
    expect(kept.length).toBeGreaterThan(0);
    for (const a of kept) expect(await h.blobs.head(a.objectKey)).not.toBeNull();
    expect(await artifactsOf(cold.document)).toEqual([]);
  });
});

describe('a runner of another model', () => {
  it('leaves the precompute job untried for a runner of its model', async () => {
    const models = tinyModels();
    const dir = await mkdtemp(join(tmpdir(), 'kvrag-defer-'));
    const queue = new MemoryJobQueue();
    const other = await createRunner({
      modelDir: models.make('other', { seed: 7 }),
      backend: 'reference',
      blobs: h.blobs,
      kvDiskDir: join(dir, 'other'),
      dtype: 'f32',
      queue,
      precomputeDeferMs: 100,
    });
    await other.start();
    try {
      const ids = h.model.tokenizer.encode('a chunk for the serving model only');
      const hash = 'c'.repeat(64);
      await enqueueJob(
        queue,
        'precompute',
        { v: 1, modelFingerprint: h.model.fingerprint, chunks: [{ chunkHash: hash, tokenIds: ids }] },
        { jobId: 'defer-me' },
      );
      // the other runner takes it, and puts it back: delayed, no try spent, no report
      await waitFor(
        async () => (await queue.getJob('precompute', 'defer-me'))?.state === 'delayed',
        'deferral',
      );
      await new Promise((r) => setTimeout(r, 500));
      expect(await queue.getJob('precompute', 'defer-me')).toMatchObject({ attemptsMade: 0 });
      expect(await queue.getJob('precompute-done', 'precompute-done-defer-me')).toBeNull();

      // a runner of the job's model (a rolling update's new one) comes up and does it
      const matching = await createRunner({
        engine: h.runner.core.engine,
        blobs: h.blobs,
        kvDiskDir: join(dir, 'matching'),
        dtype: 'f32',
        queue,
      });
      await matching.start();
      try {
        await waitFor(
          async () => (await queue.getJob('precompute', 'defer-me'))?.state === 'completed',
          'the matching runner to do the job',
        );
        const done = await queue.getJob<{ artifacts: { chunkHash: string }[] }>(
          'precompute-done',
          'precompute-done-defer-me',
        );
        expect(done?.data.artifacts.map((a) => a.chunkHash)).toEqual([hash]);
      } finally {
        await matching.stop({ graceMs: 0 });
      }
    } finally {
      await other.stop({ graceMs: 0 });
      await queue.close();
      await rm(dir, { recursive: true, force: true });
      models.cleanup();
    }
  });
});

describe('the reconciler', () => {
  const deps = () => ({ db: h.db.db, blobs: h.blobs, embeddings: h.api.embeddings, model: h.model });
  const statusOf = async (id: string) =>
    (await h.db.db.select().from(documents).where(eq(documents.id, id)))[0];

  it('re-drives a precomputing document whose precompute jobs were lost; it becomes ready', async () => {
    const { collection } = await h.ingest(key, 'Record 21: the archive opens at nine.');
    // a document left in precomputing with no job alive: its artifacts deleted behind its back and its
    // jobs gone (what a Redis crash leaves)
    const id = await h.upload(key, collection, 'Record 22: the north gate closes at dusk.');
    const arts = await artifactsOf(id);
    await h.db.db.delete(kvArtifacts).where(
      inArray(
        kvArtifacts.id,
        arts.map((a) => a.id),
      ),
    );
    await h.db.db.update(documents).set({ status: 'precomputing' }).where(eq(documents.id, id));
    // not yet past the deadline: left alone
    expect(await reconcileOnce(deps(), new MemoryJobQueue(), { afterMs: 60_000 })).toMatchObject({
      checked: 0,
    });
    await new Promise((r) => setTimeout(r, 300));
    const r = await reconcileOnce(deps(), new MemoryJobQueue(), { afterMs: 200, attempts: 3 });
    expect(r).toMatchObject({ checked: 1, redriven: 1 });
    expect(await statusOf(id)).toMatchObject({ status: 'precomputing', redrives: 1 });
    expect((await statusOf(id)).error).toMatch(/^re-driven \(1 of 3\) after no progress in precomputing/);
    // the re-drive's precompute job goes through the harness's own queue (relay, runner, precompute-done)
    await waitFor(async () => (await statusOf(id)).status === 'ready', 'ready after the re-drive', 30_000);
    expect((await statusOf(id)).error).toBeNull();
    // and no precompute job is left undelivered (the relay marks a row delivered after handing it to the
    // queue, which can be after the job's own work made the document ready)
    const undelivered = () =>
      h.db.db
        .select()
        .from(outbox)
        .where(and(eq(outbox.queue, 'precompute'), isNull(outbox.deliveredAt)));
    await waitFor(async () => (await undelivered()).length === 0, 'the outbox drained', 10_000);
    expect(await undelivered()).toEqual([]);
  });

  it('marks a document failed with the reason after its re-drives run out', async () => {
    const { collection } = await h.ingest(key, 'Record 31: the bridge toll is two coins.');
    const id = await h.upload(key, collection, 'Record 32: the mill grinds on tuesdays.');
    // stuck in parsing with its ingest job long gone, already re-driven as often as allowed
    await h.db.db
      .update(documents)
      .set({ status: 'parsing', redrives: 2, error: 'connection refused' })
      .where(eq(documents.id, id));
    await new Promise((r) => setTimeout(r, 300));
    const r = await reconcileOnce(deps(), new MemoryJobQueue(), { afterMs: 200, attempts: 2 });
    expect(r).toMatchObject({ failed: 1 });
    const doc = await statusOf(id);
    expect(doc.status).toBe('failed');
    expect(doc.error).toBe(
      'not ready after 2 re-drives: no progress in parsing (last error: connection refused)',
    );
    expect(await h.db.db.select().from(chunks).where(eq(chunks.documentId, id))).toEqual([]);
  });

  it('leaves a document whose job is still waiting in the queue alone, however old', async () => {
    const { collection } = await h.ingest(key, 'Record 41: the well is forty feet deep.');
    const id = await h.upload(key, collection, 'Record 42: the orchard has ninety trees.');
    await h.db.db.update(documents).set({ status: 'queued' }).where(eq(documents.id, id));
    const queue = new MemoryJobQueue();
    // its ingest job waits in a backlog (no consumer)
    await queue.enqueue('ingest', {}, { jobId: `ingest-${id}` });
    await new Promise((r) => setTimeout(r, 300));
    expect(await reconcileOnce(deps(), queue, { afterMs: 200 })).toMatchObject({ checked: 1, waiting: 1 });
    expect(await statusOf(id)).toMatchObject({ status: 'queued', redrives: 0 });
    await queue.close();
  });
});
