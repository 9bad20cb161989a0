// The squeezed index (format v3: the clusters alone) through the tiers, for every artifact dtype: a squeezed
// request completes each block's index once from the resident K/V — from host memory (uploaded whole) and
// from the object store (read layer-wise) alike — to what completeIndex gives over the host-decoded
// artifact; an index section corrupt in the object store is refused while the K/V still serve, and the
// index is then built from the resident keys (with every key selected, the logits stay the good run's).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIndex } from '../../gpu-runner/engine/attention/squeezed/codec.ts';
import { completeIndex } from '../../gpu-runner/engine/attention/squeezed/index.ts';
import type { SqueezedIndex } from '../../gpu-runner/engine/attention/squeezed/types.ts';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { decodeLayers, KV_DTYPES, type KVDType } from '../../gpu-runner/engine/kv/artifact-format.ts';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../../gpu-runner/engine/kv/engine-tier.ts';
import { ObjectTier } from '../../gpu-runner/engine/kv/object-tier.ts';
import { chunkKey, precomputeChunks } from '../../gpu-runner/engine/kv/precompute.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { Assembler } from '../../gpu-runner/engine/reuse/assemble.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { seqTokens } from '../helpers/kv-reuse-suite.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

/** Each cluster's centroid, pair radii and mean value are its members' (decoded K/V), computed here directly. */
function checkStatistics(ix: SqueezedIndex, layers: readonly { k: Float32Array; v: Float32Array }[]) {
  const { n, headDim: d, kvHeads } = ix;
  for (const [hi, h] of ix.heads.entries()) {
    const at = (x: Float32Array, p: number, e: number) => x[((hi % kvHeads) * n + p) * d + e];
    const { k: keys, v: values } = layers[Math.floor(hi / kvHeads)];
    for (let c = 0; c < h.k; c++) {
      const members = h.order.subarray(h.starts[c], h.starts[c + 1]);
      for (let e = 0; e < d; e++) {
        const mean = (x: Float32Array) => members.reduce((s, p) => s + at(x, p, e), 0) / members.length;
        expect(h.centroids[c * d + e]).toBeCloseTo(mean(keys), 5);
        expect(h.values![c * d + e]).toBeCloseTo(mean(values), 5);
      }
      for (let i = 0; i < d / 2; i++) {
        const r = Math.max(
          ...[...members].map((p) =>
            Math.hypot(
              at(keys, p, i) - h.centroids[c * d + i],
              at(keys, p, i + d / 2) - h.centroids[c * d + i + d / 2],
            ),
          ),
        );
        expect(h.radius![c * (d / 2) + i]).toBeCloseTo(r, 5);
      }
    }
  }
}

const models = tinyModels();
let engine: Engine;
beforeAll(async () => {
  const dir = models.make('ixt', { layers: 2, seed: 11, hidden: 64, heads: 4, kvHeads: 2, headDim: 16 });
  engine = await loadEngine(dir);
});
afterAll(() => {
  engine.dispose();
  models.cleanup();
});

// chunks longer than the default 64-token window, so their heads have clusters
const system = seqTokens(6, 1);
const chunks = [seqTokens(110, 2), seqTokens(90, 3)];
const request = {
  system,
  chunks,
  question: seqTokens(4, 4),
  mode: 'independent' as const,
  squeezed: { kind: 'budget' as const, fraction: 1 },
};

function runner(blobs: MemoryBlobStore, dtype: KVDType) {
  const store = new ArtifactStore({
    fingerprint: engine.fingerprint,
    tokenizerHash: engine.tokenizer.hash,
    host: new HostTier(64 << 20),
    object: new ObjectTier(blobs, engine.fingerprint),
  });
  const tier = new EngineTier(engine.backend, engine.config, store, 64 << 20);
  return { store, tier, asm: new Assembler(engine, tier, { dtype }) };
}

for (const dtype of KV_DTYPES.filter((d) => d !== 'f32')) {
  describe(`squeezed index v3 through the tiers (${dtype})`, () => {
    const blobs = new MemoryBlobStore();
    let warm: ReturnType<typeof runner>;
    let good: Float32Array;
    beforeAll(async () => {
      warm = runner(blobs, dtype);
      await precomputeChunks(
        engine,
        warm.store,
        [system, ...chunks].map((tokenIds) => ({ tokenIds })),
        { dtype },
      );
    });
    afterAll(() => warm.tier.clear());

    /** The resident entry's index and note (an engine-tier hit). */
    async function resident(r: ReturnType<typeof runner>, tokens: number[]) {
      const got = (await r.tier.acquire(chunkKey(engine, tokens, dtype)))!;
      got.release();
      expect(got.tier).toBe('engine');
      return got.entry;
    }

    it('host (whole) and object store (layer-wise) complete it to the host-decoded artifact’s index', async () => {
      const fromHost = await warm.asm.assemble(request);
      fromHost.free();
      expect(fromHost.report.artifactsByTier).toEqual({ host: 3 });
      good = fromHost.logits;
      const cold = runner(blobs, dtype);
      const fromObject = await cold.asm.assemble(request);
      fromObject.free();
      expect(fromObject.report.artifactsByTier).toEqual({ object: 3 });
      for (const out of [fromHost, fromObject])
        expect(out.report.squeezed).toMatchObject({ used: true, indexedBlocks: 3, builtIndexes: 0 });
      expect(maxAbsDiff(fromObject.logits, good)).toBe(0);
      for (const tokens of chunks) {
        const a = (await warm.store.get(chunkKey(engine, tokens, dtype)))!.artifact;
        const stored = parseIndex(a.index!, a.header);
        if (stored.kind !== 'clusters') throw new Error('precompute wrote a complete (pre-v3) index');
        const layers = decodeLayers(a);
        const want = completeIndex(stored.index, layers);
        checkStatistics(want, layers);
        for (const r of [warm, cold]) {
          const entry = await resident(r, tokens);
          expect(entry.indexNote).toBeNull();
          const ix = entry.index!;
          expect(ix.heads.map((h) => h.k)).toEqual(want.heads.map((h) => h.k));
          expect(ix.heads.some((h) => h.k > 0)).toBe(true);
          for (const [hi, h] of ix.heads.entries()) {
            const w = want.heads[hi];
            expect(h.order).toEqual(w.order);
            expect(maxAbsDiff(h.centroids, w.centroids)).toBeLessThan(1e-5);
            expect(maxAbsDiff(h.radius!, w.radius!)).toBeLessThan(1e-5);
            expect(maxAbsDiff(h.values!, w.values!)).toBeLessThan(1e-5);
            expect(maxAbsDiff(h.win!.centroid, w.win!.centroid)).toBeLessThan(1e-5);
          }
        }
      }
      cold.tier.clear();
    });

    it('a corrupt index section in the object store is refused; the K/V serve and the index is built', async () => {
      const bad = new MemoryBlobStore();
      const objects = new ObjectTier(blobs, engine.fingerprint);
      for (const tokens of [system, ...chunks]) {
        const key = objects.objectKey(chunkKey(engine, tokens, dtype));
        await bad.put(key, (await blobs.get(key))!);
      }
      const a = (await warm.store.get(chunkKey(engine, chunks[0], dtype)))!.artifact;
      const key = objects.objectKey(a.header.key);
      const flipped = (await bad.get(key))!.slice();
      flipped[a.header.index!.offset + 9] ^= 0x10;
      await bad.put(key, flipped);
      const cold = runner(bad, dtype);
      const out = await cold.asm.assemble(request);
      out.free();
      expect(out.report.artifactsByTier).toEqual({ object: 3 });
      expect(out.report.precomputedTokens).toBe(0); // the K/V were not refused
      expect(out.report.squeezed).toMatchObject({ used: true, indexedBlocks: 3, builtIndexes: 1 });
      expect(maxAbsDiff(out.logits, good)).toBeLessThan(1e-4);
      const entry = await resident(cold, chunks[0]);
      expect(entry.indexNote).toMatch(/index section.*checksum/);
      expect(entry.index!.heads.some((h) => h.k > 0)).toBe(true);
      cold.tier.clear();
    });
  });
}
