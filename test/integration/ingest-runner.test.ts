// DESIGN §1 ingest flow with the real runner: upload → outbox → relay → BullMQ `ingest` → chunks →
// outbox `precompute` → relay → the runner's precompute consumer (reference backend, tiny model) stores
// each chunk's KV artifact in the object store → `precompute-done` → kv_artifacts rows → `ready`.
// PGlite over the wire, BullMQ on redis-server, filesystem objects shared by the workers and the runner.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHeader, readPreamble } from '../../gpu-runner/engine/kv/artifact-format.ts';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import { chunks, documents, kvArtifacts } from '../../src/db/schema.ts';
import { BullMqJobQueue } from '../../src/queue/bullmq.ts';
import { type RunningWorkers, startWorkers } from '../../workers/run.ts';
import { loadServingModel, type ServingModel } from '../../workers/serving-model.ts';
import { type Harness, startApiHarness } from '../helpers/api-harness.ts';
import { waitFor } from '../helpers/job-queue-suite.ts';
import { type RedisTestServer, startRedis } from '../helpers/redis-server.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';

describe('upload → workers → real runner → ready (PGlite wire, BullMQ, fs objects)', () => {
  let h: Harness;
  let redis: RedisTestServer;
  let models: TinyModels;
  let model: ServingModel;
  let queue: BullMqJobQueue;
  let workers: RunningWorkers;
  let runner: Runner;
  let tmp: string;

  beforeAll(async () => {
    models = tinyModels();
    tmp = await mkdtemp(join(tmpdir(), 'kvrag-ingest-runner-'));
    [h, redis] = await Promise.all([startApiHarness(), startRedis()]);
    const dir = models.make('m');
    model = loadServingModel(dir);
    queue = new BullMqJobQueue({ url: redis.url, prefix: 'ingest-runner' });
    workers = startWorkers({ db: h.db.db, blobs: h.blobs, embeddings: h.api.embeddings, model }, queue, {
      relay: { idleMs: 50 },
      sweepEveryMs: 0,
    });
    runner = await createRunner({
      modelDir: dir,
      backend: 'reference',
      blobs: h.blobs,
      kvDiskDir: join(tmp, 'kv'),
      dtype: 'f32',
      queue,
    });
    await runner.start();
  });
  afterAll(async () => {
    await runner?.stop({ graceMs: 0 });
    await workers?.stop();
    await queue?.close();
    await h?.close();
    await redis?.stop();
    await rm(tmp, { recursive: true, force: true });
    models?.cleanup();
  });

  it('a document reaches ready with one stored, readable artifact per distinct chunk', async () => {
    const tenant = await h.tenant('runner');
    const col = await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
      key: tenant.key,
      json: { name: 'r', chunking: { size: 64, overlap: 0 } },
    });
    const text = Array.from({ length: 6 }, (_, i) => `Record R${100 + i} has value ${7000 + i * 13}.`).join(
      '\n\n',
    );
    const doc = await h.expectJson<{ id: string }>(201, 'POST', `/v1/collections/${col.id}/documents`, {
      key: tenant.key,
      json: { text, filename: 'records.txt' },
    });
    await waitFor(
      async () => {
        const [d] = await h.db.db.select().from(documents).where(eq(documents.id, doc.id));
        if (d.status === 'failed') throw new Error(`document failed: ${d.error}`);
        return d.status === 'ready';
      },
      'ready',
      45_000,
    );
    const rows = await h.db.db.select().from(chunks).where(eq(chunks.documentId, doc.id));
    const hashes = new Set(rows.map((r) => r.contentHash));
    expect(rows.length).toBeGreaterThan(1);
    const arts = (await h.db.db.select().from(kvArtifacts)).filter((a) => hashes.has(a.chunkHash));
    expect(new Set(arts.map((a) => a.chunkHash))).toEqual(hashes);
    for (const a of arts) {
      expect(a).toMatchObject({ status: 'ready', modelFingerprint: model.fingerprint });
      const bytes = await h.blobs.get(a.objectKey);
      expect(bytes?.byteLength).toBe(a.bytes);
      // the stored object is an artifact of this model holding exactly the chunk's tokens
      expect(readPreamble(bytes!).totalBytes).toBe(a.bytes);
      const header = parseHeader(bytes!, { fingerprint: model.fingerprint });
      const chunk = rows.find((r) => r.contentHash === a.chunkHash)!;
      expect(header.tokenIds).toEqual(model.tokenizer.encode(chunk.text));
    }
  });
});
