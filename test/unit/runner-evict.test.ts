// Deleted artifacts leave the runner's local tiers (issue 19 §5): once the object store no longer holds an
// artifact (gc deleted it with its document), the runner's eviction sweep drops its copies from engine
// memory, host memory and the local disk (the file is gone); artifacts still stored are kept; an object
// store that does not answer drops nothing.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactObjectKey } from '../../contracts/artifacts.ts';
import { createRunner, type Runner } from '../../gpu-runner/server/runner.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { collectSse } from '../helpers/sse.ts';
import { tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
const tmp = mkdtempSync(join(tmpdir(), 'kvrag-evict-'));
let runner: Runner;
let blobs: MemoryBlobStore;

beforeAll(async () => {
  blobs = new MemoryBlobStore();
  runner = await createRunner({
    modelDir: models.make('ev', { arch: 'llama', seed: 2 }),
    backend: 'reference',
    blobs,
    kvDiskDir: join(tmp, 'kv'),
    dtype: 'f32',
    evictCheckMs: 0,
  });
  await runner.start();
});
afterAll(async () => {
  await runner?.stop({ graceMs: 0 });
  models.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

const call = (path: string, body?: unknown) =>
  runner.app.fetch(
    new Request(`http://runner${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${runner.core.credential.current}`,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  );
const diskFiles = () =>
  readdirSync(join(tmp, 'kv'), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.kv'));

describe('runner eviction of deleted artifacts', () => {
  it('drops engine, host and disk copies of artifacts the object store no longer holds, keeps the rest', async () => {
    const res = await call('/v1/precompute', {
      chunks: [{ text: 'doomed chunk text' }, { text: 'kept chunk text' }],
    });
    const { artifacts } = (await res.json()) as { artifacts: { key: string }[] };
    const [doomed, kept] = artifacts.map((a) => a.key);
    // load both into engine memory by generating over them
    const gen = await call('/v1/generate', {
      chunks: [{ key: doomed }, { key: kept }],
      question: 'q',
      maxTokens: 1,
    });
    await collectSse(gen);
    const where = async (key: string) =>
      ((await (await call(`/v1/artifacts/${key}`)).json()) as { tiers: Record<string, boolean> }).tiers;
    expect(await where(doomed)).toMatchObject({ host: true, disk: true, object: true });
    expect(diskFiles().some((f) => f.includes(doomed))).toBe(true);

    // gc deletes the object; a store that cannot answer drops nothing
    const fp = runner.core.engine.fingerprint;
    await blobs.delete(artifactObjectKey(fp, doomed));
    const head = blobs.head.bind(blobs);
    blobs.head = async () => {
      throw new Error('object store unavailable');
    };
    expect(await runner.evictDeleted()).toBe(0);
    blobs.head = head;
    expect((await where(doomed)).disk).toBe(true);

    expect(await runner.evictDeleted()).toBe(1);
    expect(await where(doomed)).toEqual({ engine: false, host: false, disk: false, object: false });
    expect(diskFiles().some((f) => f.includes(doomed))).toBe(false);
    expect(await where(kept)).toMatchObject({ host: true, disk: true, object: true });
    expect(existsSync(join(tmp, 'kv'))).toBe(true);
  });
});
