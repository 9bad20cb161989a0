// Chunk precompute and the engine-memory tier on the reference backend with a tiny model: batched
// precompute equals chunks prefilled alone, is idempotent, and stores under the content key; refused
// artifacts (flipped byte, another model's) are recomputed, never used; the engine tier keeps device K/V
// within its byte capacity (LRU, held entries stay), loads a key once for concurrent requests, and serves
// warm requests device → device; a cold request reads the object store's sections straight into engine
// memory (no host copy), layer by layer, the question's first layer starting before the last has arrived.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Engine, loadEngine } from '../../gpu-runner/engine/engine.ts';
import { decodeArtifact, decodeLayers, readPreamble } from '../../gpu-runner/engine/kv/artifact-format.ts';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import { EngineTier } from '../../gpu-runner/engine/kv/engine-tier.ts';
import { ObjectTier } from '../../gpu-runner/engine/kv/object-tier.ts';
import { chunkKey, precomputeChunks } from '../../gpu-runner/engine/kv/precompute.ts';
import { readPacked } from '../../gpu-runner/engine/kv/rerotate.ts';
import { HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { Assembler } from '../../gpu-runner/engine/reuse/assemble.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { liveLogits, seqTokens } from '../helpers/kv-reuse-suite.ts';
import { maxAbsDiff, tinyModels } from '../helpers/tiny-model.ts';

const models = tinyModels();
let engine: Engine;
let other: Engine;
beforeAll(async () => {
  engine = await loadEngine(models.make('a', { seed: 11 }));
  other = await loadEngine(models.make('b', { seed: 12 }));
});
afterAll(() => {
  engine.dispose();
  other.dispose();
  models.cleanup();
});

const storeFor = (e: Engine, hostBytes = 64 << 20, object?: ObjectTier) =>
  new ArtifactStore({
    fingerprint: e.fingerprint,
    tokenizerHash: e.tokenizer.hash,
    host: new HostTier(hostBytes),
    object,
  });

/** Counts engine.forward calls (the real forward still runs). */
function countForwards(e: Engine): { calls: number; restore(): void } {
  const orig = e.forward;
  const counter = {
    calls: 0,
    restore: () => {
      e.forward = orig;
    },
  };
  e.forward = (...args) => {
    counter.calls++;
    return orig.apply(e, args);
  };
  return counter;
}

const chunks = [seqTokens(12, 1), seqTokens(7, 2), seqTokens(20, 3), seqTokens(5, 4)];

describe('precomputeChunks', () => {
  it('batches chunks into few forward steps, and each equals the chunk prefilled alone', async () => {
    const batched = storeFor(engine);
    const alone = storeFor(engine);
    const c1 = countForwards(engine);
    const res = await precomputeChunks(
      engine,
      batched,
      chunks.map((tokenIds) => ({ tokenIds })),
      { dtype: 'f32', maxBatchTokens: 32 },
    );
    c1.restore();
    expect(c1.calls).toBe(2); // 12 + 7 (+20 would pass 32) | 20 + 5
    const c2 = countForwards(engine);
    await precomputeChunks(
      engine,
      alone,
      chunks.map((tokenIds) => ({ tokenIds })),
      { dtype: 'f32', maxBatchTokens: 1 },
    );
    c2.restore();
    expect(c2.calls).toBe(4);
    for (const [i, r] of res.entries()) {
      expect(r.key).toBe(chunkKey(engine, chunks[i], 'f32'));
      expect(r.bytes).toBeGreaterThan(0);
      const a = (await batched.get(r.key))?.artifact;
      const b = (await alone.get(r.key))?.artifact;
      if (!a || !b) throw new Error('artifact missing');
      expect(a.header.tokenIds).toEqual(chunks[i]);
      expect(a.header.fingerprint).toBe(engine.fingerprint);
      const [la, lb] = [decodeLayers(a), decodeLayers(b)];
      for (let l = 0; l < engine.config.layers; l++) {
        expect(maxAbsDiff(la[l].k, lb[l].k)).toBeLessThanOrEqual(1e-5);
        expect(maxAbsDiff(la[l].v, lb[l].v)).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('is idempotent, and f16 (the default) halves the payload under a different key', async () => {
    const store = storeFor(engine);
    const first = await precomputeChunks(engine, store, [{ tokenIds: chunks[0] }, { tokenIds: chunks[0] }]);
    expect(first.map((r) => r.skipped)).toEqual([false, true]);
    const again = await precomputeChunks(engine, store, [{ tokenIds: chunks[0] }]);
    expect(again[0]).toMatchObject({ skipped: true, bytes: 0, key: first[0].key });
    const f32 = await precomputeChunks(engine, store, [{ tokenIds: chunks[0] }], { dtype: 'f32' });
    expect(f32[0].key).not.toBe(first[0].key);
    const payload = (bytes: number) => bytes - 2048; // generous bound on preamble + header + padding
    expect(payload(f32[0].bytes)).toBeGreaterThan(1.5 * payload(first[0].bytes));
    const h = (await store.get(first[0].key))?.artifact.header;
    expect(h?.dtype).toBe('f16');
  });

  it('puts an artifact the object store lost (gc) back there although a local tier still holds it', async () => {
    const blobs = new MemoryBlobStore();
    const object = new ObjectTier(blobs, engine.fingerprint);
    const store = storeFor(engine, 64 << 20, object);
    const [first] = await precomputeChunks(engine, store, [{ tokenIds: chunks[1] }]);
    expect(first.skipped).toBe(false);
    await blobs.delete(object.objectKey(first.key));
    expect(await store.where(first.key)).toEqual({ host: true, object: false });
    const [again] = await precomputeChunks(engine, store, [{ tokenIds: chunks[1] }]);
    expect(again.key).toBe(first.key);
    expect(await blobs.head(object.objectKey(first.key))).not.toBeNull();
    expect(await store.where(first.key)).toEqual({ host: true, object: true });
  });
});

describe('refused artifacts are recomputed, never used', () => {
  const system = seqTokens(6, 9);
  const question = seqTokens(4, 8);

  it('a flipped byte in host memory', async () => {
    const host = new HostTier(64 << 20);
    const store = new ArtifactStore({
      fingerprint: engine.fingerprint,
      tokenizerHash: engine.tokenizer.hash,
      host,
    });
    const [r] = await precomputeChunks(engine, store, [{ tokenIds: chunks[2] }], { dtype: 'f32' });
    const bad = (await host.get(r.key))?.slice();
    if (!bad) throw new Error('not stored');
    bad[bad.length - 100] ^= 0x10;
    await host.put(r.key, bad);
    const asm = new Assembler(engine, new EngineTier(engine.backend, engine.config, store, 1 << 20), {
      dtype: 'f32',
    });
    const out = await asm.assemble({ system, chunks: [chunks[2]], question, mode: 'prefix' });
    out.kv.free();
    expect(out.report.precomputedTokens).toBe(system.length); // the prefix artifact did not exist yet
    const ind = await asm.assemble({ system: [], chunks: [chunks[2]], question, mode: 'independent' });
    ind.kv.free();
    expect(store.refusals.checksum).toBe(1);
    expect(ind.report.precomputedTokens).toBe(chunks[2].length);
    expect(maxAbsDiff(ind.logits, await liveLogits(engine, [...chunks[2], ...question]))).toBeLessThanOrEqual(
      1e-5,
    );
    // the recomputed copy replaced the corrupt one
    expect(decodeArtifact((await host.get(r.key)) ?? new Uint8Array()).header.key).toBe(r.key);
  });

  it("another model's artifact stored under this model's key", async () => {
    const host = new HostTier(64 << 20);
    const store = new ArtifactStore({
      fingerprint: engine.fingerprint,
      tokenizerHash: engine.tokenizer.hash,
      host,
    });
    const otherHost = new HostTier(64 << 20);
    const otherStore = new ArtifactStore({
      fingerprint: other.fingerprint,
      tokenizerHash: other.tokenizer.hash,
      host: otherHost,
    });
    const [theirs] = await precomputeChunks(other, otherStore, [{ tokenIds: chunks[1] }], { dtype: 'f32' });
    const raw = await otherHost.get(theirs.key);
    if (!raw) throw new Error('missing');
    const mine = chunkKey(engine, chunks[1], 'f32');
    await host.put(mine, raw);
    const asm = new Assembler(engine, new EngineTier(engine.backend, engine.config, store, 1 << 20), {
      dtype: 'f32',
    });
    const out = await asm.assemble({ system: [], chunks: [chunks[1]], question, mode: 'independent' });
    out.kv.free();
    expect(Object.values(store.refusals).reduce((a, b) => a + (b ?? 0), 0)).toBe(1);
    expect(out.report.precomputedTokens).toBe(chunks[1].length);
    expect(maxAbsDiff(out.logits, await liveLogits(engine, [...chunks[1], ...question]))).toBeLessThanOrEqual(
      1e-5,
    );
  });
});

describe('EngineTier', () => {
  const keysOf = async (store: ArtifactStore, cs: number[][]) =>
    (
      await precomputeChunks(
        engine,
        store,
        cs.map((tokenIds) => ({ tokenIds })),
      )
    ).map((r) => r.key);
  const same = [seqTokens(10, 21), seqTokens(10, 22), seqTokens(10, 23)];

  it('keeps device bytes within capacity, evicting the least recently used', async () => {
    const store = storeFor(engine);
    const [a, b, c] = await keysOf(store, same);
    // an entry holds the artifact's sections as stored (f16 here) and the padding between them
    const probe = await new EngineTier(engine.backend, engine.config, store, 0).acquire(a);
    const per = probe?.entry.bytes ?? 0;
    probe?.release();
    const sections = 2 * engine.config.layers * engine.config.kvHeads * 10 * engine.config.headDim * 2;
    expect(per).toBeGreaterThanOrEqual(sections);
    expect(per).toBeLessThan(sections + 64 * 2 * engine.config.layers);
    const tier = new EngineTier(engine.backend, engine.config, store, 2 * per);
    const use = async (k: string) => (await tier.acquire(k))?.release();
    await use(a);
    await use(b);
    await use(a); // a is now the most recent
    await use(c); // evicts b
    expect(tier.has(a)).toBe(true);
    expect(tier.has(b)).toBe(false);
    expect(tier.has(c)).toBe(true);
    const s = tier.stats();
    expect(s).toMatchObject({ hits: 1, misses: 3, evictions: 1, entries: 2, residentBytes: 2 * per });
    expect(s.bytesWritten).toBe(3 * per);
    tier.clear();
    expect(tier.stats().residentBytes).toBe(0);
  });

  it('never evicts an entry someone holds; releases it afterwards', async () => {
    const store = storeFor(engine);
    const [a, b] = await keysOf(store, same);
    const one = await entryBytes(store, a);
    const tier = new EngineTier(engine.backend, engine.config, store, one);
    const held = await tier.acquire(a);
    const other = await tier.acquire(b);
    expect(tier.stats().residentBytes).toBe(2 * one); // over capacity while both are held
    other?.release();
    expect(tier.has(b)).toBe(false);
    expect(tier.has(a)).toBe(true);
    held?.release();
    held?.release(); // twice is harmless
    expect(tier.stats().entries).toBe(1);
    tier.clear();
  });

  it('loads a key once for concurrent requests; null for an unknown key', async () => {
    const host = new HostTier(64 << 20);
    const store = new ArtifactStore({
      fingerprint: engine.fingerprint,
      tokenizerHash: engine.tokenizer.hash,
      host,
    });
    const [a] = await keysOf(store, same);
    const tier = new EngineTier(engine.backend, engine.config, store, 64 << 20);
    const got = await Promise.all([tier.acquire(a), tier.acquire(a), tier.acquire(a)]);
    expect(host.stats().hits).toBe(1);
    expect(got.map((g) => g?.tier)).toEqual(['host', 'engine', 'engine']);
    expect(new Set(got.map((g) => g?.entry.packed)).size).toBe(1);
    for (const g of got) g?.release();
    expect(await tier.acquire('0'.repeat(64))).toBeNull();
    tier.clear();
  });

  it('with capacity 0, an entry lives exactly as long as someone holds it', async () => {
    const store = storeFor(engine);
    const [a, b] = await keysOf(store, same);
    const tier = new EngineTier(engine.backend, engine.config, store, 0);
    const other = await tier.acquire(b);
    const [x, y] = await Promise.all([tier.acquire(a), tier.acquire(a), Promise.resolve(other?.release())]);
    expect(tier.has(b)).toBe(false);
    expect(x?.entry).toBe(y?.entry);
    x?.release();
    expect(tier.has(a)).toBe(true); // y still holds it
    if (!y) throw new Error('not acquired');
    const decoded = await readPacked(engine.backend, engine.model.invFreq, y.entry.packed); // still allocated
    expect(decoded).toHaveLength(engine.config.layers);
    y.release();
    expect(() => engine.backend.freePackedKV(y.entry.packed)).toThrow(/after freePackedKV/);
    expect(tier.has(a)).toBe(false);
    expect(tier.stats()).toMatchObject({ residentBytes: 0, entries: 0, evictions: 2 });
  });

  it('a cold request reads the object store; the next is warm in engine memory', async () => {
    const blobs = new MemoryBlobStore();
    const writer = storeFor(engine, 64 << 20, new ObjectTier(blobs, engine.fingerprint));
    await keysOf(writer, [chunks[0], chunks[1]]);
    // a fresh runner: empty host memory, the same object store
    const host = new HostTier(64 << 20);
    const store = new ArtifactStore({
      fingerprint: engine.fingerprint,
      tokenizerHash: engine.tokenizer.hash,
      host,
      object: new ObjectTier(blobs, engine.fingerprint),
    });
    const asm = new Assembler(engine, new EngineTier(engine.backend, engine.config, store, 64 << 20));
    const req = {
      system: chunks[0],
      chunks: [chunks[1]],
      question: seqTokens(3, 5),
      mode: 'independent' as const,
    };
    const cold = await asm.assemble(req);
    cold.kv.free();
    expect(cold.report.artifactsByTier).toEqual({ object: 2 });
    // the header and the K/V sections, not the index section (only a squeezed request reads it)
    let expected = 0;
    for (const c of [chunks[0], chunks[1]]) {
      const whole = (await writer.get(chunkKey(engine, c)))!.artifact.bytes;
      const h = decodeArtifact(whole).header;
      expect(h.index).not.toBeNull();
      const kv = [...h.sections.k, ...h.sections.v];
      const span = Math.max(...kv.map((r) => r.offset + r.bytes)) - Math.min(...kv.map((r) => r.offset));
      expected += readPreamble(whole).headerBytes + span;
    }
    expect(cold.report.bytesLoaded.object).toBe(expected);
    expect(host.stats().entries).toBe(0); // read into engine memory, not copied to host memory
    const warm = await asm.assemble(req);
    warm.kv.free();
    expect(warm.report.artifactsByTier).toEqual({ engine: 2 });
    expect(maxAbsDiff(warm.logits, cold.logits)).toBe(0);
    asm.tier.clear();
  });
});

/** Device bytes of the artifact `key` resident in an engine tier. */
async function entryBytes(store: ArtifactStore, key: string): Promise<number> {
  const got = await new EngineTier(engine.backend, engine.config, store, 0).acquire(key);
  got?.release();
  return got?.entry.bytes ?? 0;
}
