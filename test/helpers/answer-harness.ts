// The answer side end to end: the API harness (PGlite wire, fs blobs, hash embeddings) with the answer
// routes mounted, in-process workers on the MemoryJobQueue, and a real runner (reference backend, a tiny
// fixture model) consuming `precompute` from the same queue and answering /v1/generate through app.fetch.
// `ingest()` uploads a document and waits for `ready` (its chunk artifacts stored).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import { documents } from '../../src/db/schema.ts';
import { MemoryJobQueue } from '../../src/queue/memory.ts';
import type { JobQueue } from '../../contracts/queue.ts';
import type { BlobStore } from '../../contracts/blob-store.ts';
import { withRunnerToken } from '../../contracts/runner-api.ts';
import { ArtifactUse } from '../../src/answer/artifact-use.ts';
import { AnswerCache } from '../../src/answer/cache.ts';
import { type AnswerModel, ModelCatalog } from '../../src/answer/models.ts';
import type { AnswerServices, CachedAnswer } from '../../src/answer/services.ts';
import { inProcessSource, RunnerPool, type RunnerSource } from '../../src/routing/runner-client.ts';
import { type RunningWorkers, startWorkers, type WorkersOptions } from '../../workers/run.ts';
import { loadServingModel, type ServingModel } from '../../workers/serving-model.ts';
import { type Harness, type HarnessOptions, startApiHarness } from './api-harness.ts';
import { waitFor } from './job-queue-suite.ts';
import { type TinyModels, tinyModels } from './tiny-model.ts';

export interface AnswerHarness extends Harness {
  runner: Runner;
  model: ServingModel;
  served: AnswerModel;
  answer: AnswerServices;
  /** The answers' artifact-use recorder (flush() writes last_used_at now). */
  artifactUse: ArtifactUse;
  /** Replaces the pool's runner source (router tests). */
  useSource(source: RunnerSource): void;
  /** A collection of the tenant (64-token chunks) with one document, ready. */
  ingest(key: string, text: string, filename?: string): Promise<{ collection: string; document: string }>;
  /** Uploads a document to an existing collection and waits for `ready`; its id. */
  upload(key: string, collection: string, text: string, filename?: string): Promise<string>;
}

export interface AnswerHarnessOptions {
  /** Default: the in-process queue. */
  queue?: JobQueue;
  /** Default: a FsBlobStore in a temp dir. */
  blobs?: BlobStore;
  /** Passed to the API harness (database URL, settings). */
  api?: Pick<HarnessOptions, 'dbVia' | 'env' | 'pool'>;
  /** Passed to startWorkers over the defaults (relay every 20 ms, no sweep, no reconciler). */
  workers?: WorkersOptions;
}

export async function startAnswerHarness(opts: AnswerHarnessOptions = {}): Promise<AnswerHarness> {
  const models: TinyModels = tinyModels();
  const tmp = await mkdtemp(join(tmpdir(), 'kvrag-answer-'));
  const h = await startApiHarness({ ...opts.api, blobs: opts.blobs });
  const dir = models.make('m');
  const model = loadServingModel(dir);
  const queue = opts.queue ?? new MemoryJobQueue();
  const workers: RunningWorkers = startWorkers(
    { db: h.db.db, blobs: h.blobs, embeddings: h.api.embeddings, model },
    queue,
    { relay: { idleMs: 20 }, sweepEveryMs: 0, reconcile: false, ...opts.workers },
  );
  const runner = await createRunner({
    modelDir: dir,
    backend: 'reference',
    blobs: h.blobs,
    kvDiskDir: join(tmp, 'kv'),
    dtype: 'f32',
    queue,
  });
  await runner.start();
  const profile = runner.core.engine.profile;
  const artifactUse = new ArtifactUse(h.db.db);
  const answer: AnswerServices = {
    runners: new RunnerPool(
      inProcessSource(
        withRunnerToken((r) => runner.app.fetch(r), runner.core.credential.current),
        profile,
      ),
    ),
    // the served model as the runner reports it (the pool may be swapped by useSource: read it per call)
    models: new ModelCatalog(() => answer.runners.profiles(), { seed: [profile] }),
    cache: new AnswerCache<CachedAnswer>({ ttlMs: 60_000, maxEntries: 100 }),
    artifactUse,
  };
  const [served] = await answer.models.list();
  h.api.answer = answer;

  const upload = async (key: string, collection: string, text: string, filename = 'doc.txt') => {
    const doc = await h.expectJson<{ id: string }>(201, 'POST', `/v1/collections/${collection}/documents`, {
      key,
      json: { text, filename },
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
    return doc.id;
  };

  return {
    ...h,
    runner,
    model,
    served,
    answer,
    useSource(source) {
      answer.runners = new RunnerPool(source);
    },
    async ingest(key, text, filename = 'doc.txt') {
      const col = await h.expectJson<{ id: string }>(201, 'POST', '/v1/collections', {
        key,
        json: { name: `c-${crypto.randomUUID().slice(0, 8)}`, chunking: { size: 64, overlap: 0 } },
      });
      return { collection: col.id, document: await upload(key, col.id, text, filename) };
    },
    upload,
    artifactUse,
    async close() {
      await artifactUse.close();
      await runner.stop({ graceMs: 0 });
      await workers.stop();
      await queue.close();
      await h.close();
      await rm(tmp, { recursive: true, force: true });
      models.cleanup();
    },
  };
}
