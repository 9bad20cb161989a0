// Squeezed attention that keeps the answer (issue 23): bound-aware scoring selects one matching key that
// its cluster's mean hides; the engine's step (FixedContext + attendLayer) with everything selected equals
// dense attention, and with nothing selected equals clustered attention (each cluster's centroid key
// weighted by its size, with its mean value, ⊕ the live tokens) computed with the reference backend's ops
// — on the reference and wasm backends alike; per-head budgets average to the request's; a version-1
// index section still reads.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIndex } from '../../gpu-runner/engine/attention/squeezed/codec.ts';
import { encodeIndexV2 } from '../../gpu-runner/engine/attention/squeezed/codec-v2.ts';
import { FixedContext } from '../../gpu-runner/engine/attention/squeezed/fixed-context.ts';
import { buildIndex, summariseClusters } from '../../gpu-runner/engine/attention/squeezed/index.ts';
import { toClusterMajor } from '../../gpu-runner/engine/attention/squeezed/layout.ts';
import { relativeError } from '../../gpu-runner/engine/attention/squeezed/metrics.ts';
import {
  boundScores,
  chooseClusters,
  headFractions,
  scoreClusters,
  type SelectMode,
} from '../../gpu-runner/engine/attention/squeezed/select.ts';
import {
  fixedKeys,
  syntheticContext,
  syntheticQueries,
} from '../../gpu-runner/engine/attention/squeezed/synthetic.ts';
import type { HeadIndex, SqueezedIndex } from '../../gpu-runner/engine/attention/squeezed/types.ts';
import { attendLayer } from '../../gpu-runner/engine/attention/step-attention.ts';
import { createBackend } from '../../gpu-runner/engine/backends/registry.ts';
import type { Backend } from '../../gpu-runner/engine/backends/types.ts';

describe('bound-aware cluster scoring', () => {
  it('selects a single matching key inside a large cluster that the mean hides', () => {
    const d = 8;
    const big = 200; // cluster 0: ±e1 keys (mean ≈ 0) and one key 5·e2 that matches the query
    const small = 20; // clusters 1..20: 10 keys each near 1.2·e2 (they score best by their mean)
    const n = big + small * 10;
    const keys = new Float32Array(n * d);
    for (let p = 0; p < big; p++) keys[p * d] = p % 2 === 0 ? 3 : -3;
    keys[57 * d] = 0;
    keys[57 * d + 1] = 5;
    for (let c = 0; c < small; c++)
      for (let t = 0; t < 10; t++) {
        const p = big + c * 10 + t;
        keys[p * d + 1] = 1.2;
        keys[p * d + 2 + (c % 6)] = 0.1 * (t - 4.5);
      }
    const starts = Int32Array.from({ length: small + 2 }, (_, c) => (c === 0 ? 0 : big + (c - 1) * 10));
    const order = Int32Array.from({ length: n }, (_, i) => i);
    const centroids = new Float32Array((small + 1) * d);
    for (let c = 0; c <= small; c++)
      for (let p = starts[c]; p < starts[c + 1]; p++)
        for (let e = 0; e < d; e++) centroids[c * d + e] += keys[p * d + e] / (starts[c + 1] - starts[c]);
    const clusters = { k: small + 1, centroids, starts, order };
    const h: HeadIndex = { ...clusters, ...summariseClusters(clusters, keys, null, n, d) };
    expect(Math.max(...h.radius!.subarray(0, d / 2))).toBeGreaterThan(4.9); // the planted key is ≈ 5 from the mean
    // one query head (group of 1), q = 4·e2
    const q = new Float32Array(d);
    q[1] = 4;
    const scale = 1 / Math.sqrt(d);
    const mode: SelectMode = { kind: 'budget', fraction: (big + 60) / n }; // room for cluster 0 + 6 small
    const bound = chooseClusters(h, scoreClusters(h, q, 1, 1, 1, 0, d, scale), n, 0, mode);
    expect(bound).toContain(0);
    // the mean estimate alone (no bound) ranks the small clusters first and fills the budget with them
    const logN = Float32Array.from({ length: h.k }, (_, c) => Math.log(starts[c + 1] - starts[c]));
    const logits = Float32Array.from({ length: h.k }, (_, c) => {
      let s = 0;
      for (let e = 0; e < d; e++) s += q[e] * centroids[c * d + e];
      return s * scale + logN[c];
    });
    const mean = chooseClusters(h, boundScores(logits, 1, h.k, logN, null), n, 0, mode);
    expect(mean).not.toContain(0);
  });
});

describe('per-head budgets', () => {
  it('sum to the request budget over the heads, none above 1, in proportion to the weights below it', () => {
    const weights = [0.2, 0.5, 1, 1, 1.3, 4, 0.5, 0.3];
    for (const fraction of [1 / 16, 1 / 8, 1 / 3, 0.9]) {
      const f = headFractions(weights, fraction);
      expect(f.reduce((a, b) => a + b, 0)).toBeCloseTo(fraction * weights.length, 10);
      for (const x of f) expect(x).toBeLessThanOrEqual(1);
      const free = f.map((x, i) => (x < 1 ? x / weights[i] : null)).filter((x) => x !== null);
      for (const r of free) expect(r).toBeCloseTo(free[0]!, 10);
    }
    expect(headFractions([1, 1], 1)).toEqual([1, 1]);
    expect(() => headFractions([1, 0], 0.5)).toThrow();
  });
});

const N = 640;
const LIVE = 6;
const CAP = N + LIVE;
const H = 4;
const KVH = 2;
const D = 16;
const scale = 1 / Math.sqrt(D);

function approxSuite(name: 'reference' | 'wasm', tol: number) {
  describe(`FixedContext with the dropped mass approximated (${name})`, () => {
    let b: Backend;
    let ref: Backend;
    const ctx = syntheticContext({ cap: CAP, kvHeads: KVH, headDim: D, topics: 24, seed: 21 });
    const q = syntheticQueries(ctx, { rows: 1, heads: H, kvHeads: KVH, headDim: D, topics: 24, seed: 5 });
    const vFixed = fixedKeys({ ...ctx, k: ctx.v }, KVH, N, D);
    // index window 0: nothing is always kept, so a tiny budget selects nothing
    const ix = buildIndex(
      [{ k: fixedKeys(ctx, KVH, N, D), v: vFixed }],
      { n: N, kvHeads: KVH, headDim: D },
      {
        window: 0,
        pc: 0.05,
      },
    );
    const major = (x: Float32Array) => {
      const m = toClusterMajor(ix, 0, fixedKeys({ ...ctx, k: x }, KVH, N, D));
      const out = x.slice();
      for (let g = 0; g < KVH; g++) out.set(m.subarray(g * N * D, (g + 1) * N * D), g * CAP * D);
      return out;
    };
    beforeAll(async () => {
      b = await createBackend(name, { threads: 2 });
      ref = await createBackend('reference');
    });
    afterAll(() => {
      b.dispose();
      ref.dispose();
    });

    /** The engine's step through a FixedContext of `mode` over the cluster-major cache. */
    const step = (mode: SelectMode, index: SqueezedIndex = ix) => {
      const cache = b.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
      b.kvLoad(cache, 0, 0, { k: major(ctx.k), v: major(ctx.v) });
      const invFreq = b.upload({ dtype: 'f32', shape: [D / 2], data: new Float32Array(D / 2) });
      const fc = new FixedContext(
        b,
        { layers: 1, heads: H, kvHeads: KVH, headDim: D, scale },
        [{ offset: 0, n: N, index }],
        mode,
        invFreq,
      );
      const qt = b.upload({ dtype: 'f32', shape: [1, H * D], data: q });
      const span = { cache, row: 0, count: 1, pos: CAP - 1 };
      const outT = attendLayer(b, qt, 0, [span], [{ kind: 'ranges', source: fc }], H, scale);
      const out = b.readNow(outT);
      const stats = { ...fc.stats };
      for (const t of [outT, qt, invFreq]) b.free(t);
      fc.dispose();
      b.freeKVCache(cache);
      return { out, stats };
    };

    it('everything selected equals dense attention', async () => {
      const plain = b.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
      b.kvLoad(plain, 0, 0, { k: ctx.k, v: ctx.v });
      const qt = b.upload({ dtype: 'f32', shape: [1, H * D], data: q });
      const denseT = b.attention(qt, 0, [{ cache: plain, row: 0, count: 1, pos: CAP - 1 }], H, scale);
      const dense = await b.read(denseT);
      for (const t of [denseT, qt]) b.free(t);
      b.freeKVCache(plain);
      const all = step({ kind: 'budget', fraction: 1 });
      expect(all.stats.fraction).toBe(1);
      expect(relativeError(all.out, dense)).toBeLessThanOrEqual(1e-5);
    });

    it('nothing selected equals clustered attention ⊕ the live tokens, computed by the reference backend', async () => {
      const none = step({ kind: 'budget', fraction: 1e-6 });
      expect(none.stats.keysAttended).toBe(0);
      // the expectation on the reference backend: per kv head, logits = q·Cᵀ·scale + log n_c (matmul with
      // bias), their softmax times the mean values; the live tokens by sparseAttention; merged by lse
      const cache = ref.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
      ref.kvLoad(cache, 0, 0, { k: ctx.k, v: ctx.v });
      const qt = ref.upload({ dtype: 'f32', shape: [1, H * D], data: q });
      const live = Int32Array.of(N, CAP);
      const exact = ref.sparseAttention(
        qt,
        0,
        { cache, row: 0, count: 1, pos: CAP - 1 },
        {
          blockSize: 1,
          ranges: [[live], [live]],
          columns: [[new Int32Array(0)], [new Int32Array(0)]],
        },
        H,
        scale,
      );
      const liveOut = await ref.read(exact.out);
      const liveLse = await ref.read(exact.lse);
      const want = new Float32Array(H * D);
      for (let h = 0; h < H; h++) {
        const hd = ix.heads[Math.floor(h / (H / KVH))];
        const table = ref.upload({
          dtype: 'f32',
          shape: [hd.k, D],
          data: hd.centroids.map((x) => x * scale),
        });
        const logN = Float32Array.from({ length: hd.k }, (_, c) => Math.log(hd.starts[c + 1] - hd.starts[c]));
        const bias = ref.upload({ dtype: 'f32', shape: [hd.k], data: logN });
        const qh = ref.upload({ dtype: 'f32', shape: [1, D], data: q.subarray(h * D, (h + 1) * D) });
        const logitsT = ref.matmul(qh, table, bias);
        const logits = await ref.read(logitsT);
        const p = ref.softmax(logitsT);
        const vt = new Float32Array(D * hd.k); // mean values transposed: [D][k]
        for (let c = 0; c < hd.k; c++) for (let e = 0; e < D; e++) vt[e * hd.k + c] = hd.values![c * D + e];
        const vT = ref.upload({ dtype: 'f32', shape: [D, hd.k], data: vt });
        const clusteredT = ref.matmul(p, vT);
        const clustered = await ref.read(clusteredT);
        const mx = Math.max(...logits);
        const lse = mx + Math.log(logits.reduce((s, x) => s + Math.exp(x - mx), 0));
        const m2 = Math.max(lse, liveLse[h]);
        const wc = Math.exp(lse - m2);
        const wl = Math.exp(liveLse[h] - m2);
        for (let e = 0; e < D; e++)
          want[h * D + e] = (wc * clustered[e] + wl * liveOut[h * D + e]) / (wc + wl);
        for (const t of [table, bias, qh, logitsT, p, vT, clusteredT]) ref.free(t);
      }
      for (const t of [exact.out, exact.lse, qt]) ref.free(t);
      ref.freeKVCache(cache);
      // (the device table is f16 on both backends: centroid rows rounded)
      expect(relativeError(none.out, want)).toBeLessThanOrEqual(tol);
    });

    it('approximating the dropped clusters is closer to dense than dropping them', async () => {
      const plain = b.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
      b.kvLoad(plain, 0, 0, { k: ctx.k, v: ctx.v });
      const qt = b.upload({ dtype: 'f32', shape: [1, H * D], data: q });
      const denseT = b.attention(qt, 0, [{ cache: plain, row: 0, count: 1, pos: CAP - 1 }], H, scale);
      const dense = await b.read(denseT);
      for (const t of [denseT, qt]) b.free(t);
      b.freeKVCache(plain);
      for (const fraction of [1 / 16, 1 / 8]) {
        const approx = step({ kind: 'budget', fraction });
        const drop = step({ kind: 'budget', fraction, approximate: false });
        expect(approx.stats.keysAttended).toBe(drop.stats.keysAttended);
        expect(relativeError(approx.out, dense)).toBeLessThan(relativeError(drop.out, dense));
      }
    });

    it('a version-1 index (no summaries) still reads and serves, its window always kept', () => {
      const v1: SqueezedIndex = {
        ...ix,
        heads: ix.heads.map((h) => ({ ...h, radius: null, values: null, win: null })),
      };
      const bytes = encodeIndexV2(v1);
      expect(new DataView(bytes.buffer).getUint32(4, true)).toBe(1);
      const stored = parseIndex(bytes, { n: N, layers: 1, kvHeads: KVH, headDim: D });
      expect(stored).toEqual({ kind: 'complete', index: v1 });
      const back = stored.index as SqueezedIndex;
      const r = step({ kind: 'budget', fraction: 1 / 8 }, back);
      expect(r.stats.fraction).toBeGreaterThan(0);
      expect(r.stats.fraction).toBeLessThanOrEqual(1 / 8);
    });
  });
}

approxSuite('reference', 2e-3);
approxSuite('wasm', 2e-3);

describe('exact part of a merged step: sparseAttention with one block and no columns', () => {
  it('wasm (its grouped ranges kernel) equals the reference backend, out and lse', async () => {
    const [wasm, ref] = [await createBackend('wasm', { threads: 2 }), await createBackend('reference')];
    try {
      const ctx = syntheticContext({ cap: CAP, kvHeads: KVH, headDim: D, topics: 12, seed: 3 });
      const rows = 3;
      const q = syntheticQueries(ctx, { rows, heads: H, kvHeads: KVH, headDim: D, topics: 12, seed: 9 });
      const plan = {
        blockSize: rows,
        ranges: [[Int32Array.of(5, 90, 300, 420, N, CAP)], [Int32Array.of(0, 40, N - 3, CAP)]],
        columns: [[new Int32Array(0)], [new Int32Array(0)]],
      };
      const run = async (b: Backend) => {
        const cache = b.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
        b.kvLoad(cache, 0, 0, { k: ctx.k, v: ctx.v });
        const qt = b.upload({ dtype: 'f32', shape: [rows, H * D], data: q });
        const r = b.sparseAttention(qt, 0, { cache, row: 0, count: rows, pos: CAP - rows }, plan, H, scale);
        const got = { out: await b.read(r.out), lse: await b.read(r.lse) };
        for (const t of [r.out, r.lse, qt]) b.free(t);
        b.freeKVCache(cache);
        return got;
      };
      const [w, r] = [await run(wasm), await run(ref)];
      expect(relativeError(w.out, r.out)).toBeLessThanOrEqual(1e-5);
      for (let i = 0; i < r.lse.length; i++) expect(w.lse[i]).toBeCloseTo(r.lse[i], 4);
    } finally {
      wasm.dispose();
      ref.dispose();
    }
  });
});
