// Compressed chunk artifacts (int8, int4) through the engine tier, for every dtype, on the reference
// backend (kvUnpack on the host) and wasm (the kv_unpack kernel): a request assembled from them attends
// over exactly the values the codec decodes (the same request over f32 artifacts holding those values
// gives the same logits), hot and warm alike, and read layer by layer from the object store (the
// filesystem store, in place) as from host memory; a corrupt compressed section, in host memory or in the
// object store midway through a layer-wise read, is refused and recomputed, and the recomputed artifact
// replaces it. A runner stores the dtype its model's reuse.json
// names unless told otherwise.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import {
  decodeLayers,
  encodeArtifact,
  KV_DTYPES,
  sectionOf,
  verifyArtifact,
} from '../../gpu-runner/engine/kv/artifact-format.ts';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../../gpu-runner/engine/kv/engine-tier.ts';
import { chunkKey, chunkMeta, precomputeChunks } from '../../gpu-runner/engine/kv/precompute.ts';
import { ObjectTier } from '../../gpu-runner/engine/kv/object-tier.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { Assembler } from '../../gpu-runner/engine/reuse/assemble.ts';
import { createRunner } from '../../gpu-runner/server/runner.ts';
import { withRunnerToken } from '../../contracts/runner-api.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { seqTokens } from '../helpers/kv-reuse-suite.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let engine: Engine;
let wasm: Engine;
beforeAll(async () => {
  const dir = models.make('c', { layers: 3, seed: 5, hidden: 64, heads: 4, kvHeads: 2, headDim: 16 });
  engine = await loadEngine(dir);
  wasm = await loadEngine(dir, { backend: await createWasmBackend({ threads: 2, splitAll: true }) });
});
afterAll(() => {
  engine.dispose();
  wasm.dispose();
  models.cleanup();
});

const system = seqTokens(9, 1);
const chunks = [seqTokens(40, 2), seqTokens(23, 3)];
const question = seqTokens(5, 4);
const request = { system, chunks, question, mode: 'independent' as const };

function world(
  engine: Engine,
  dtype: (typeof KV_DTYPES)[number],
  engineBytes: number,
  objects?: FsBlobStore,
) {
  const host = new HostTier(64 << 20);
  const store = new ArtifactStore({
    fingerprint: engine.fingerprint,
    tokenizerHash: engine.tokenizer.hash,
    host,
    object: objects ? new ObjectTier(objects, engine.fingerprint) : undefined,
  });
  // one layer per read: the object-store cases read every artifact layer by layer
  const tier = new EngineTier(engine.backend, engine.config, store, engineBytes, { readBytes: 1 });
  return { host, store, asm: new Assembler(engine, tier, { dtype }) };
}

const cases = KV_DTYPES.flatMap((dtype) => (['reference', 'wasm'] as const).map((b) => [dtype, b] as const));
describe.each(cases)('%s artifacts through the engine tier (%s)', (dtype, backend) => {
  const on = () => (backend === 'wasm' ? wasm : engine);
  it('attend over exactly the decoded values, hot and warm', async () => {
    const engine = on();
    expect(engine.backend.caps.kvUnpack).toBe(backend === 'wasm');
    const w = world(engine, dtype, 64 << 20);
    await precomputeChunks(
      engine,
      w.store,
      [system, ...chunks].map((tokenIds) => ({ tokenIds })),
      { dtype },
    );
    // the same blocks as f32 artifacts holding exactly what the `dtype` artifacts decode to
    const twin = world(engine, 'f32', 0);
    for (const block of [system, ...chunks]) {
      const bytes = await w.host.get(chunkKey(engine, block, dtype));
      if (!bytes) throw new Error('not stored');
      const a = verifyArtifact(bytes);
      expect(a.header.dtype).toBe(dtype);
      const f32 = encodeArtifact(chunkMeta(engine, block, 'f32'), decodeLayers(a));
      await twin.store.put(chunkKey(engine, block, 'f32'), f32);
    }
    const want = await twin.asm.assemble(request);
    want.kv.free();
    const warm = await w.asm.assemble(request);
    warm.kv.free();
    const hot = await w.asm.assemble(request);
    hot.kv.free();
    expect(warm.report.artifactsByTier).toEqual({ host: 3 });
    expect(hot.report.artifactsByTier).toEqual({ engine: 3 });
    expect(maxAbsDiff(warm.logits, want.logits)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(hot.logits, want.logits)).toBeLessThanOrEqual(1e-5);
    w.asm.tier.clear();
  });

  it('a corrupt section is refused and recomputed; the good copy replaces it', async () => {
    const engine = on();
    const w = world(engine, dtype, 0);
    const [r] = await precomputeChunks(engine, w.store, [{ tokenIds: chunks[0] }], { dtype });
    const good = await w.host.get(r.key);
    if (!good) throw new Error('not stored');
    const bad = good.slice();
    const k1 = sectionOf(verifyArtifact(good), 'k', 1);
    bad[k1.byteOffset - good.byteOffset + Math.floor(k1.byteLength / 2)] ^= 0x20;
    await w.host.put(r.key, bad);
    const out = await w.asm.assemble({ system: [], chunks: [chunks[0]], question, mode: 'independent' });
    out.kv.free();
    expect(w.store.refusals.checksum).toBe(1);
    expect(out.report.precomputedTokens).toBe(chunks[0].length);
    const stored = await w.host.get(r.key);
    expect(stored && verifyArtifact(stored).header.dtype).toBe(dtype);
    // the recomputed artifact is the one the first precompute wrote (prefill and encoding are deterministic)
    expect(stored).toEqual(good);
    const again = await w.asm.assemble({ system: [], chunks: [chunks[0]], question, mode: 'independent' });
    again.kv.free();
    expect(again.report.precomputedTokens).toBe(0);
    expect(maxAbsDiff(again.logits, out.logits)).toBe(0);
  });

  it('read layer by layer from the object store into device memory: the same logits as from host memory', async () => {
    const engine = on();
    const objects = new FsBlobStore(mkdtempSync(join(tmpdir(), 'kvrag-kvc-')));
    try {
      const w = world(engine, dtype, 0, objects);
      await precomputeChunks(
        engine,
        w.store,
        [system, ...chunks].map((tokenIds) => ({ tokenIds })),
        { dtype },
      );
      const warm = await w.asm.assemble(request);
      warm.kv.free();
      expect(warm.report.artifactsByTier).toEqual({ host: 3 });
      // a fresh runner over the same object store; one section of the second chunk corrupted there
      const key = chunkKey(engine, chunks[1], dtype);
      const objectKey = new ObjectTier(objects, engine.fingerprint).objectKey(key);
      const good = (await objects.get(objectKey))!;
      const bad = good.slice();
      const v2 = sectionOf(verifyArtifact(good), 'v', 2);
      bad[v2.byteOffset + 5] ^= 0x08;
      await objects.put(objectKey, bad);
      const cold = world(engine, dtype, 0, objects);
      const out = await cold.asm.assemble(request);
      out.kv.free();
      // the refused one was recomputed, stored in every tier, and taken from host memory
      expect(out.report.artifactsByTier).toEqual({ object: 3, host: 1 });
      expect(cold.store.refusals).toEqual({ checksum: 1 });
      expect(out.report.precomputedTokens).toBe(chunks[1].length);
      expect(await objects.get(objectKey)).toEqual(good); // recomputed and written back
      expect(maxAbsDiff(out.logits, warm.logits)).toBe(0);
    } finally {
      rmSync(objects.root, { recursive: true, force: true });
    }
  });
});

describe('the artifact dtype a runner stores', () => {
  it("is the model's reuse.json artifactDType, unless the runner is given one", async () => {
    const dir = models.make('profiled', { layers: 1, hidden: 32, heads: 2, kvHeads: 1, headDim: 16 });
    writeFileSync(
      join(dir, 'reuse.json'),
      JSON.stringify({ v: 1, independentTrained: false, artifactDType: 'int8' }),
    );
    for (const [given, want] of [
      [undefined, 'int8'],
      ['int4', 'int4'],
    ] as const) {
      const runner = await createRunner({
        modelDir: dir,
        backend: 'reference',
        blobs: new MemoryBlobStore(),
        dtype: given,
      });
      try {
        await runner.start();
        expect(runner.core.dtype).toBe(want);
        const fetch = withRunnerToken((r) => runner.app.fetch(r), runner.core.credential.current);
        const res = await fetch(
          new Request('http://runner/v1/precompute', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ chunks: [{ tokenIds: seqTokens(6, 1) }] }),
          }),
        );
        expect(res.status).toBe(200);
        const { artifacts } = (await res.json()) as { artifacts: { key: string }[] };
        expect(artifacts[0].key).toBe(chunkKey(runner.core.engine, seqTokens(6, 1), want));
        const stored = await runner.core.store.get(artifacts[0].key);
        expect(stored?.artifact.header.dtype).toBe(want);
      } finally {
        await runner.stop();
      }
    }
  });
});
