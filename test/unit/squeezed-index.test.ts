// The squeezed-attention index (DESIGN.md §4.2): k-means structure (a partition of the clustered
// positions, centroids = means of the raw keys, ceil(pc·n) clusters at most, deterministic per seed),
// the index section round trip through encodeArtifact/decodeArtifact (v3: the clusters alone, statistics
// derived from the artifact's K/V; v1/v2 sections still read), hostile bytes refused with IndexError
// (never a crash or a huge allocation), and the wasm k-means assignment matching TS.
import { describe, expect, it } from 'vitest';
import {
  bitsFor,
  encodeIndex,
  INDEX_FORMAT_VERSION,
  IndexError,
  parseIndex,
} from '../../gpu-runner/engine/attention/squeezed/codec.ts';
import { encodeIndexV2 } from '../../gpu-runner/engine/attention/squeezed/codec-v2.ts';
import {
  buildIndex,
  buildIndexSection,
  completeIndex,
  DEFAULT_PC,
} from '../../gpu-runner/engine/attention/squeezed/index.ts';
import { assignHost, prng } from '../../gpu-runner/engine/attention/squeezed/kmeans.ts';
import { fixedKeys, syntheticContext } from '../../gpu-runner/engine/attention/squeezed/synthetic.ts';
import type { SqueezedIndex, StoredIndex } from '../../gpu-runner/engine/attention/squeezed/types.ts';
import { wasmKmeansAssign } from '../../bench/_wasm-kmeans.ts';
import { createWasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import {
  type ArtifactMeta,
  decodeArtifact,
  encodeArtifact,
} from '../../gpu-runner/engine/kv/artifact-format.ts';

const N = 600;
const KVH = 2;
const D = 16;
const LAYERS = 2;
const W = 40;

function artifact() {
  const meta: ArtifactMeta = {
    fingerprint: 'b'.repeat(64),
    tokenizerHash: 'tok',
    dtype: 'f32',
    tokenIds: Array.from({ length: N }, (_, i) => i % 300),
    layers: LAYERS,
    kvHeads: KVH,
    headDim: D,
    rope: { theta: 10000, scaling: null },
  };
  const layers = Array.from({ length: LAYERS }, (_, l) => {
    const ctx = syntheticContext({ cap: N, kvHeads: KVH, headDim: D, topics: 12, seed: 10 + l });
    return { k: fixedKeys(ctx, KVH, N, D), v: ctx.v.slice() };
  });
  return { meta, layers };
}
const geom = { n: N, layers: LAYERS, kvHeads: KVH, headDim: D };

describe('squeezed index', () => {
  const { meta, layers } = artifact();
  const ix = buildIndex(layers, { n: N, kvHeads: KVH, headDim: D }, { window: W, seed: 3 });

  it('partitions the clustered positions; centroids are the means of the raw keys', () => {
    expect(ix.heads).toHaveLength(LAYERS * KVH);
    const clustered = N - W;
    for (const [hi, h] of ix.heads.entries()) {
      expect(h.k).toBeGreaterThan(0);
      expect(h.k).toBeLessThanOrEqual(Math.ceil(DEFAULT_PC * clustered));
      expect([...h.order].sort((a, b) => a - b)).toEqual(Array.from({ length: clustered }, (_, i) => i));
      const l = Math.floor(hi / KVH);
      const g = hi % KVH;
      for (let c = 0; c < h.k; c++) {
        expect(h.starts[c + 1]).toBeGreaterThan(h.starts[c]);
        const mean = new Float64Array(D);
        for (let t = h.starts[c]; t < h.starts[c + 1]; t++)
          for (let e = 0; e < D; e++) mean[e] += layers[l].k[(g * N + h.order[t]) * D + e];
        for (let e = 0; e < D; e++)
          expect(h.centroids[c * D + e]).toBeCloseTo(mean[e] / (h.starts[c + 1] - h.starts[c]), 5);
      }
    }
  });

  it('is deterministic for a seed', () => {
    const again = buildIndex(layers, { n: N, kvHeads: KVH, headDim: D }, { window: W, seed: 3 });
    expect(encodeIndex(again)).toEqual(encodeIndex(ix));
  });

  it('stores the clusters alone (v3) and completes to the built index from the artifact K/V', () => {
    const section = buildIndexSection(layers, meta, { window: W, seed: 3 });
    expect(new DataView(section.buffer).getUint32(4, true)).toBe(INDEX_FORMAT_VERSION);
    // front + per head: k and its labels, bitsFor(k) bits per clustered position
    const words = ix.heads.reduce((s, h) => s + 1 + Math.ceil(((N - W) * bitsFor(h.k)) / 32), 7);
    expect(section.byteLength).toBe(words * 4);
    const bytes = encodeArtifact(meta, layers, section);
    const decoded = decodeArtifact(bytes);
    expect(decoded.index).not.toBeNull();
    const stored = parseIndex(decoded.index as Uint8Array, decoded.header);
    expect(stored.kind).toBe('clusters');
    if (stored.kind !== 'clusters') return;
    for (const [hi, h] of stored.index.heads.entries()) {
      expect(h.starts).toEqual(ix.heads[hi].starts);
      expect(h.order).toEqual(ix.heads[hi].order);
    }
    // the statistics derived from the (exact, f32) decoded K/V are the builder's, bit for bit
    expect(completeIndex(stored.index, decoded.layers)).toEqual(ix);
  });

  it('reads the sections stored before v3 (v2: f32 statistics; v1: none) as complete indexes', () => {
    const v2 = encodeIndexV2(ix);
    expect(new DataView(v2.buffer).getUint32(4, true)).toBe(2);
    expect(v2.byteLength).toBeGreaterThan(10 * encodeIndex(ix).byteLength);
    expect(parseIndex(v2, geom)).toEqual({ kind: 'complete', index: ix });
    const v1: SqueezedIndex = {
      ...ix,
      heads: ix.heads.map((h) => ({ ...h, radius: null, values: null, win: null })),
    };
    const b1 = encodeIndexV2(v1);
    expect(new DataView(b1.buffer).getUint32(4, true)).toBe(1);
    expect(parseIndex(b1, geom)).toEqual({ kind: 'complete', index: v1 });
  });

  it('keeps everything in the window when the chunk is shorter than it', () => {
    const short = Array.from({ length: LAYERS }, (_, l) => {
      const ctx = syntheticContext({ cap: 30, kvHeads: KVH, headDim: D, topics: 3, seed: l });
      return { k: fixedKeys(ctx, KVH, 30, D), v: ctx.v.slice() };
    });
    const small = buildIndex(short, { n: 30, kvHeads: KVH, headDim: D }, { window: W });
    expect(small.window).toBe(30);
    expect(small.heads.every((h) => h.k === 0)).toBe(true);
    const stored = parseIndex(encodeIndex(small), { ...geom, n: 30 });
    expect(stored.kind === 'clusters' && completeIndex(stored.index, short)).toEqual(small);
  });

  describe('hostile bytes', () => {
    const good = encodeIndex(ix);
    const legacy = encodeIndexV2(ix);
    const refuse = (bytes: Uint8Array, g = geom) => expect(() => parseIndex(bytes, g)).toThrow(IndexError);
    const withWord = (at: number, value: number, from = good) => {
      const b = from.slice();
      new DataView(b.buffer).setUint32(at * 4, value >>> 0, true);
      return b;
    };
    it('refuses truncation, bad magic, versions, geometry and trailing bytes', () => {
      for (const b of [good, legacy]) {
        refuse(b.subarray(0, 20));
        refuse(b.subarray(0, b.byteLength - 4));
        refuse(withWord(0, 0x12345678, b));
        refuse(withWord(1, INDEX_FORMAT_VERSION + 1, b));
        refuse(b, { ...geom, headDim: 8 });
        refuse(withWord(3, N + 1, b)); // window > n
        const longer = new Uint8Array(b.byteLength + 4);
        longer.set(b);
        refuse(longer);
      }
    });
    it('refuses a huge cluster count without allocating for it', () => {
      for (const b of [good, legacy]) {
        refuse(withWord(7, 0xffffffff, b));
        refuse(withWord(7, 0x7fffffff, b));
        refuse(withWord(7, 0, b));
      }
    });
    it('refuses labels naming no cluster and clusters without members (v3)', () => {
      const k0 = ix.heads[0].k;
      expect(k0).toBeLessThan(2 ** bitsFor(k0)); // so a label can be out of range
      refuse(withWord(8, 0xffffffff)); // labels ≥ k
      refuse(withWord(7, k0 + 1)); // same bits per label, cluster k0 empty
    });
    it('refuses v2 starts and order that do not partition the keys', () => {
      const k0 = ix.heads[0].k;
      const startsAt = 8 + k0 * D;
      refuse(withWord(startsAt + 1, 0, legacy)); // empty first cluster
      refuse(withWord(startsAt + k0, N, legacy)); // last start ≠ clustered
      const orderAt = startsAt + k0 + 1;
      refuse(withWord(orderAt, ix.heads[0].order[1], legacy)); // duplicate position
      refuse(withWord(orderAt, -1, legacy));
      refuse(withWord(8, 0x7fc00000, legacy)); // NaN centroid
    });
    it('random corruption is either refused with IndexError or parses into a valid partition', () => {
      const rand = prng(99);
      for (const from of [good, legacy])
        for (let t = 0; t < 300; t++) {
          const b = from.slice();
          const flips = 1 + Math.floor(rand() * 4);
          for (let f = 0; f < flips; f++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
          let parsed: StoredIndex | null = null;
          try {
            parsed = parseIndex(b, geom);
          } catch (err) {
            expect(err).toBeInstanceOf(IndexError);
          }
          for (const h of parsed?.index.heads ?? []) {
            expect(h.starts[h.k]).toBe(N - W);
            expect([...h.order].sort((x, y) => x - y)).toEqual(Array.from({ length: N - W }, (_, i) => i));
          }
        }
    });
  });
});

describe('k-means assignment on wasm', () => {
  it('matches the TS nearest-centroid assignment', async () => {
    const wasm = await createWasmBackend({ threads: 1 });
    try {
      const rand = prng(5);
      const n = 300;
      const k = 17;
      const x = Float32Array.from({ length: n * D }, () => rand() * 2 - 1);
      const c = Float32Array.from({ length: k * D }, () => rand() * 2 - 1);
      const pt = wasm.upload({ dtype: 'f32', shape: [n, D], data: x });
      const ct = wasm.upload({ dtype: 'f32', shape: [k, D], data: c });
      const { assign, dist } = wasmKmeansAssign(wasm, pt, ct);
      const got = await wasm.readInt(assign);
      for (const t of [pt, ct, assign, dist]) wasm.free(t);
      expect([...got]).toEqual([...assignHost(x, n, D, c, k)]);
    } finally {
      wasm.dispose();
    }
  });
});
