import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../gpu-runner/engine/kv/artifact-store.ts';
import {
  type ArtifactMeta,
  artifactKey,
  decodeLayers,
  encodeArtifact,
  KV_DTYPES,
  type KVDType,
  sectionOf,
} from '../../gpu-runner/engine/kv/artifact-format.ts';
import { ObjectTier } from '../../gpu-runner/engine/kv/object-tier.ts';
import { DiskTier, HostTier } from '../../gpu-runner/engine/kv/tiers.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';

const FP = 'f'.repeat(64);
function artifact(seed: number, n = 16, dtype: KVDType = 'f16'): { key: string; bytes: Uint8Array } {
  const meta: ArtifactMeta = {
    fingerprint: FP,
    tokenizerHash: 'tok',
    dtype,
    tokenIds: Array.from({ length: n }, (_, i) => (seed * 31 + i) % 256),
    layers: 2,
    kvHeads: 2,
    headDim: 8,
    rope: { theta: 10000, scaling: { type: 'default' } },
  };
  const size = 2 * n * 8;
  const layer = () => ({
    k: Float32Array.from({ length: size }, (_, i) => Math.sin(seed + i)),
    v: Float32Array.from({ length: size }, (_, i) => Math.cos(seed - i)),
  });
  return { key: artifactKey(meta), bytes: encodeArtifact(meta, [layer(), layer()]) };
}

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'kvrag-tier-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('host tier', () => {
  it('evicts least recently used artifacts to stay within its byte capacity', async () => {
    const arts = [1, 2, 3, 4].map((s) => artifact(s));
    const size = Math.max(...arts.map((a) => a.bytes.byteLength));
    expect(4 * Math.min(...arts.map((a) => a.bytes.byteLength))).toBeGreaterThan(size * 3);
    const host = new HostTier(size * 3);
    for (const a of arts.slice(0, 3)) await host.put(a.key, a.bytes);
    await host.get(arts[0].key); // 0 is now most recent; 1 is the oldest
    await host.put(arts[3].key, arts[3].bytes);
    expect(host.stats().residentBytes).toBeLessThanOrEqual(size * 3);
    expect(await host.has(arts[1].key)).toBe(false);
    expect(await host.has(arts[0].key)).toBe(true);
    const s = host.stats();
    expect(s).toMatchObject({ hits: 1, evictions: 1, entries: 3 });
    expect(await host.get(arts[1].key)).toBeNull();
    expect(host.stats().misses).toBe(1);
  });
});

describe('disk tier', () => {
  it.each(KV_DTYPES)(
    'survives a restart (%s): the index is rebuilt from the headers, in LRU order, within capacity',
    async (dtype) => {
      const dir = tempDir();
      const arts = [1, 2, 3].map((s) => artifact(s, 16, dtype));
      const size = Math.max(...arts.map((a) => a.bytes.byteLength));
      const disk = await DiskTier.open(dir, size * 10);
      for (const a of arts) await disk.put(a.key, a.bytes);
      const reopened = await DiskTier.open(dir, size * 10);
      expect(reopened.keys().sort()).toEqual(arts.map((a) => a.key).sort());
      expect(reopened.stats().residentBytes).toBe(arts.reduce((n, a) => n + a.bytes.byteLength, 0));
      expect(await reopened.get(arts[1].key)).toEqual(arts[1].bytes);
      // Reopen with room for two: the least recently used goes.
      const small = await DiskTier.open(dir, size * 2);
      expect(small.stats().entries).toBe(2);
      expect(small.stats().residentBytes).toBeLessThanOrEqual(size * 2);
      expect(await small.has(arts[1].key)).toBe(true);
    },
  );

  it('removes unreadable files and interrupted writes when it opens', async () => {
    const dir = tempDir();
    const a = artifact(7);
    const disk = await DiskTier.open(dir, 1 << 20);
    await disk.put(a.key, a.bytes);
    const sub = join(dir, a.key.slice(0, 2));
    const bad = artifact(8);
    const badPath = join(dir, bad.key.slice(0, 2));
    writeFileSync(join(sub, `${a.key}.kv.tmp-1-0`), a.bytes.subarray(0, 100));
    await disk.put(bad.key, bad.bytes);
    writeFileSync(join(badPath, `${bad.key}.kv`), bad.bytes.subarray(0, 40)); // truncated
    const reopened = await DiskTier.open(dir, 1 << 20);
    expect(reopened.keys()).toEqual([a.key]);
    expect(reopened.stats().corrupt).toBe(1);
    expect(readdirSync(sub).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe.each(KV_DTYPES)('artifact store, %s artifacts', (dtype) => {
  it('reads through the tiers, promotes hits, and loads a key once for concurrent readers', async () => {
    const blobs = new MemoryBlobStore();
    const object = new ObjectTier(blobs, FP);
    const a = artifact(11, 16, dtype);
    await object.put(a.key, a.bytes);
    const host = new HostTier(1 << 20);
    const disk = await DiskTier.open(tempDir(), 1 << 20);
    const store = new ArtifactStore({ fingerprint: FP, tokenizerHash: 'tok', host, disk, object });
    const [x, y, z] = await Promise.all([store.get(a.key), store.get(a.key), store.get(a.key)]);
    expect(x?.tier).toBe('object');
    expect(y).toBe(x);
    expect(z).toBe(x);
    expect(object.stats().hits).toBe(1);
    expect(await store.where(a.key)).toEqual({ host: true, disk: true, object: true });
    expect((await store.get(a.key))?.tier).toBe('host');
    expect(await store.get(artifact(12, 16, dtype).key)).toBeNull();
  });

  it('refuses a corrupt copy, drops it from its tier, and falls through to a good one', async () => {
    const object = new ObjectTier(new MemoryBlobStore(), FP);
    const host = new HostTier(1 << 20);
    const a = artifact(21, 16, dtype);
    await object.put(a.key, a.bytes);
    // one bit of the last layer's V section (for int8/int4: its codes) in the host copy
    const flipped = a.bytes.slice();
    const good = await new ArtifactStore({
      fingerprint: FP,
      tokenizerHash: 'tok',
      host: new HostTier(1 << 20),
      object,
    }).get(a.key);
    if (!good) throw new Error('not stored');
    const v1 = sectionOf(good.artifact, 'v', 1);
    flipped[v1.byteOffset - a.bytes.byteOffset + 3] ^= 1;
    await host.put(a.key, flipped);
    const store = new ArtifactStore({ fingerprint: FP, tokenizerHash: 'tok', host, object });
    const got = await store.get(a.key);
    expect(got?.tier).toBe('object');
    expect(decodeLayers(got!.artifact)).toEqual(decodeLayers(good.artifact));
    expect(store.refusals.checksum).toBe(1);
    expect(host.stats().corrupt).toBe(1);
    // The good copy was promoted back over the corrupt one.
    expect((await store.get(a.key))?.tier).toBe('host');
    // An artifact of another model is refused and never used.
    const other = new ArtifactStore({
      fingerprint: 'e'.repeat(64),
      tokenizerHash: 'tok',
      host: new HostTier(1 << 20),
      object,
    });
    expect(await other.get(a.key)).toBeNull();
  });
});
