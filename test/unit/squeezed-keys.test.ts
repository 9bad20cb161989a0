// Per-key squeezed attention (key-sketch.ts, issue 23): every fixed-context key scored from its int8 copy,
// exact attention over the budget's best keys, the left-out keys approximated by clustered attention (each
// group's keys not kept at its mean key, with its mean value). A planted key inside a large cluster is
// kept; everything kept equals dense; nothing kept equals clustered attention computed directly (with and
// without the prefilter); approximating beats dropping; the fused native step (native-step.ts,
// src/squeezed.cc) equals the host path. The prefilter (groups ranked by mean + λ·spread before per-key
// scoring): the planted key's group is scored though its mean ranks lower.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FixedContext } from '../../gpu-runner/engine/attention/squeezed/fixed-context.ts';
import { buildIndex } from '../../gpu-runner/engine/attention/squeezed/index.ts';
import { calibrateKeyThreshold } from '../../gpu-runner/engine/attention/squeezed/calibrate.ts';
import {
  buildKeySketch,
  type KeySketch,
  keyLogWeights,
  PICK_BLOCK,
  pickKeys,
  pickQuads,
  plainSketch,
  prefilter,
  scoreKeys,
} from '../../gpu-runner/engine/attention/squeezed/key-sketch.ts';
import { toClusterMajor } from '../../gpu-runner/engine/attention/squeezed/layout.ts';
import { type KeepRule, NativeSketches } from '../../gpu-runner/engine/attention/squeezed/native-step.ts';
import { relativeError } from '../../gpu-runner/engine/attention/squeezed/metrics.ts';
import type { SelectMode } from '../../gpu-runner/engine/attention/squeezed/select.ts';
import {
  fixedKeys,
  syntheticContext,
  syntheticQueries,
} from '../../gpu-runner/engine/attention/squeezed/synthetic.ts';
import { attendLayer } from '../../gpu-runner/engine/attention/step-attention.ts';
import { nativeBackendAvailable } from '../../gpu-runner/engine/backends/native/backend.ts';
import { loadNativeKernels } from '../../gpu-runner/engine/backends/native/index.ts';
import type { NativeKernels, NativeSqueezedStep } from '../../gpu-runner/engine/backends/native/kernels.ts';
import { createBackend } from '../../gpu-runner/engine/backends/registry.ts';
import type { Backend, Tensor } from '../../gpu-runner/engine/backends/types.ts';
import { f16ToF32, f32ToF16 } from '../../gpu-runner/engine/half.ts';

describe('per-key scoring', () => {
  it('keeps a single matching key inside a large cluster', () => {
    const d = 16;
    const n = 400; // one cluster of 400 keys ±3·e1 (mean ≈ 0) and one planted key 5·e2
    const keys = new Float32Array(n * d);
    for (let p = 0; p < n; p++) keys[p * d] = p % 2 === 0 ? 3 : -3;
    keys[157 * d] = 0;
    keys[157 * d + 1] = 5;
    const ix = buildIndex([{ k: keys }], { n, kvHeads: 1, headDim: d }, { window: 0, pc: 0.0025 });
    expect(ix.heads[0].k).toBe(1);
    const s = buildKeySketch(keys, [{ offset: 0, n, index: ix }], 0, 0, d);
    const q = new Float32Array(d);
    q[1] = 4;
    const { logits, lse, valid } = scoreKeys(s, q, 1, 1 / Math.sqrt(d));
    const keep = pickKeys(s, keyLogWeights(s, logits, lse, 1, valid), { take: 4, tau: 0 });
    expect(keep[157]).toBe(1);
    expect(keep.reduce((a, b) => a + b, 0)).toBe(4);
  });

  // SparQ's channel subset: a step scores each key over the quads of channels of largest Σ|q8|·E|k8|
  const plantedOn = (channel: number) => {
    const d = 16;
    const n = 400; // one cluster of 400 keys ±3 on channels 0–3 (signs by key), one planted key 5·e_channel
    const keys = new Float32Array(n * d);
    for (let p = 0; p < n; p++) for (let e = 0; e < 4; e++) keys[p * d + e] = (p >> e) % 2 === 0 ? 3 : -3;
    keys.fill(0, 157 * d, 158 * d);
    keys[157 * d + channel] = 5;
    const ix = buildIndex([{ k: keys }], { n, kvHeads: 1, headDim: d }, { window: 0, pc: 0.0025 });
    return { d, s: buildKeySketch(keys, [{ offset: 0, n, index: ix }], 0, 0, d) };
  };

  it('orders the channels by mean |k8| and picks the quads of largest Σ|q8|·E|k8|', () => {
    const { d, s } = plantedOn(5);
    // channels 0–3 (|k8| = 127 but for the planted key), then 5 (one key), then the empty ones by index
    expect(Array.from(s.perm.subarray(0, 6))).toEqual([0, 1, 2, 3, 5, 4]);
    const q8 = new Int8Array(d);
    q8[5] = 127;
    expect(Array.from(pickQuads(s, q8, 1, 1))).toEqual([1]); // channel 5's quad: positions 4–7
    q8[0] = 2; // a small |q| on a channel of large keys outweighs a large |q| on a near-empty one
    expect(Array.from(pickQuads(s, q8, 1, 1))).toEqual([0]);
    expect(Array.from(pickQuads(s, q8, 1, 2))).toEqual([0, 1]);
    expect(Array.from(pickQuads(s, q8, 1, 9))).toEqual([0, 1, 2, 3]);
  });

  it('keeps a planted key from 4 of 16 channels when its channel leads the query, and says when it cannot', () => {
    const { d, s } = plantedOn(5);
    const keep = (q: Float32Array, channels: number) => {
      const quads = channels / 4;
      const { logits, lse, valid } = scoreKeys(s, q, 1, 1 / Math.sqrt(d), null, quads);
      return pickKeys(s, keyLogWeights(s, logits, lse, 1, valid), { take: 16, tau: 0 });
    };
    const q = new Float32Array(d);
    q[5] = 4;
    expect(keep(q, 4)[157]).toBe(1);
    // the query also leans on the cluster's channels: their quad outranks channel 5's, and with one quad
    // scored the planted key's partial logit is 0 — below half the cluster's (the method's limit: a key is
    // found only through the channels scored); with two quads it is kept again
    q[0] = 2;
    expect(keep(q, 4)[157]).toBe(0);
    expect(keep(q, 8)[157]).toBe(1);
    expect(keep(q, 16)[157]).toBe(1);
  });

  it("the prefilter scores the planted key's group although another group's mean matches q better", () => {
    const d = 16;
    const m = 200; // block A: ±3·e1 (mean ≈ 0) with one planted key 5·e2; block B: ±3·e1 + 1·e2
    const keys = new Float32Array(2 * m * d);
    for (let p = 0; p < 2 * m; p++) {
      keys[p * d] = p % 2 === 0 ? 3 : -3;
      if (p >= m) keys[p * d + 1] = 1;
    }
    keys[57 * d] = 0;
    keys[57 * d + 1] = 5;
    const blocks = [0, m].map((offset) => ({
      offset,
      n: m,
      index: buildIndex(
        [{ k: keys.slice(offset * d, (offset + m) * d) }],
        { n: m, kvHeads: 1, headDim: d },
        {
          window: 0,
          pc: 0.005,
        },
      ),
    }));
    expect(blocks.map((b) => b.index.heads[0].k)).toEqual([1, 1]);
    const s = buildKeySketch(keys, blocks, 0, 0, d);
    const q = new Float32Array(d);
    q[1] = 4;
    const scale = 1 / Math.sqrt(d);
    // half the keys scored per key: one group; by mean B wins (4 vs ~0.1), by the bound's margin A does
    const pre = prefilter(s, q, 1, scale, 4, 0.5);
    expect(pre && Array.from(pre.cand)).toEqual([1, 0]);
    const { logits, lse, valid } = scoreKeys(s, q, 1, scale, pre);
    const keep = pickKeys(s, keyLogWeights(s, logits, lse, 1, valid), { take: 4, tau: 0 });
    expect(keep[57]).toBe(1);
    expect(keep.subarray(m).reduce((a, b) => a + b, 0)).toBe(0);
  });
});

describe('the budget by 16-slot blocks', () => {
  it('keeps whole blocks by their best key, fills the budget in rounds, then one block by its best keys', () => {
    // 8 blocks of 16 slots; slots 16..19 always attended (a block without index), so block 1 has 12
    // candidates; log weights: block b's slots at 0.01·b, with one strong key 0.5 in block 5
    const n = 8 * PICK_BLOCK;
    const group = new Int32Array(n);
    group.fill(-1, 16, 20);
    const s = { n, alwaysKeys: 4, group } as unknown as KeySketch;
    const w = new Float32Array(n);
    for (let j = 0; j < n; j++)
      w[j] = group[j] < 0 ? Number.NEGATIVE_INFINITY : 0.01 * Math.floor(j / PICK_BLOCK) + 1e-5 * (j % 16);
    w[5 * PICK_BLOCK + 3] = 0.5;
    const kept = (keep: Uint8Array) => keep.reduce((a, b) => a + b, 0);
    const blockOf = (keep: Uint8Array, b: number) =>
      kept(keep.subarray(b * PICK_BLOCK, (b + 1) * PICK_BLOCK));
    // 40 keys: blocks 5 (the strong key), 7 (best weights then) → 32; then 8 of block 6's best slots
    const k40 = pickKeys(s, w, { take: 40, tau: 0 });
    expect(kept(k40)).toBe(40);
    expect([5, 7].map((b) => blockOf(k40, b))).toEqual([16, 16]);
    expect(Array.from(k40.subarray(6 * PICK_BLOCK, 7 * PICK_BLOCK))).toEqual([
      ...Array(8).fill(0),
      ...Array(8).fill(1),
    ]);
    // six blocks whole in the first round (96 keys), then the next block (1) by its best 12: all it has
    const all = pickKeys(s, w, { take: 6 * 16 + 12, tau: 0 });
    expect(kept(all)).toBe(6 * 16 + 12);
    expect(blockOf(all, 0)).toBe(0);
    expect(Array.from(all.subarray(16, 20))).toEqual([0, 0, 0, 0]);
    // fewer than a block: the best block's best keys only
    const k3 = pickKeys(s, w, { take: 3, tau: 0 });
    expect(kept(k3)).toBe(3);
    expect(k3[5 * PICK_BLOCK + 3]).toBe(1);
    expect(blockOf(k3, 5)).toBe(3);
  });
});

describe('per-key threshold calibration', () => {
  it("τ keeps the calibrated share of the window rows' keys when threshold mode scores them", () => {
    const n = 700;
    const w = 64;
    const kvh = 2;
    const h = 4;
    const d = 16;
    const ctx = syntheticContext({ cap: n, kvHeads: kvh, headDim: d, topics: 20, seed: 3 });
    const keys = fixedKeys(ctx, kvh, n, d);
    const ix = buildIndex([{ k: keys }], { n, kvHeads: kvh, headDim: d }, { window: w, pc: 0.05 });
    const q = syntheticQueries(ctx, { rows: w, heads: h, kvHeads: kvh, headDim: d, topics: 20, seed: 9 });
    const sc = 1 / Math.sqrt(d);
    const tau = calibrateKeyThreshold([{ index: ix, windowQueries: [q], keys: [keys] }], h, sc, 1 / 8, 1);
    let kept = 0;
    let all = 0;
    for (let g = 0; g < kvh; g++) {
      const s = plainSketch(keys.subarray(g * n * d, (g * n + n - w) * d), d);
      for (let r = 0; r < w; r++) {
        const from = (r * h + g * (h / kvh)) * d;
        const { logits, lse, valid } = scoreKeys(s, q.subarray(from, from + (h / kvh) * d), h / kvh, sc);
        const keep = pickKeys(s, keyLogWeights(s, logits, lse, h / kvh, valid), { take: -1, tau });
        kept += keep.reduce((a, b) => a + b, 0);
        all += s.n;
      }
    }
    expect(kept / all).toBeGreaterThanOrEqual(1 / 8);
    expect(kept / all).toBeLessThan(1 / 8 + 0.01);
  });
});

const N = 645; // not a multiple of the native layout's 16-key blocks
const LIVE = 6;
const CAP = N + LIVE;
const H = 4;
const KVH = 2;
const D = 16;
const scale = 1 / Math.sqrt(D);

/**
 * The squeezed index of a synthetic context's N fixed keys (k, v: its cache [kv_head][CAP][D], kvh kv heads)
 * and the cluster-major layouts: of the fixed keys alone ([kv_head][N][D]) and of the whole cache (live rows
 * kept).
 */
function clustered(ctx: ReturnType<typeof syntheticContext>, k: Float32Array, v: Float32Array, kvh = KVH) {
  const ix = buildIndex(
    [{ k: fixedKeys({ ...ctx, k }, kvh, N, D), v: fixedKeys({ ...ctx, k: v }, kvh, N, D) }],
    { n: N, kvHeads: kvh, headDim: D },
    { window: 16, pc: 0.05 },
  );
  const fixedMajor = (x: Float32Array) => toClusterMajor(ix, 0, fixedKeys({ ...ctx, k: x }, kvh, N, D));
  const major = (x: Float32Array) => {
    const m = fixedMajor(x);
    const out = x.slice();
    for (let g = 0; g < kvh; g++) out.set(m.subarray(g * N * D, (g + 1) * N * D), g * CAP * D);
    return out;
  };
  return { ix, fixedMajor, major };
}

function keysSuite(name: 'reference' | 'native') {
  describe(`FixedContext with per-key scores (${name})`, () => {
    let b: Backend;
    const ctx = syntheticContext({ cap: CAP, kvHeads: KVH, headDim: D, topics: 24, seed: 21 });
    const q = syntheticQueries(ctx, { rows: 1, heads: H, kvHeads: KVH, headDim: D, topics: 24, seed: 5 });
    const { ix, fixedMajor, major } = clustered(ctx, ctx.k, ctx.v);
    let dense: Float32Array;
    beforeAll(async () => {
      b = await createBackend(name, { threads: 2 });
      const plain = b.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
      b.kvLoad(plain, 0, 0, { k: ctx.k, v: ctx.v });
      const qt = b.upload({ dtype: 'f32', shape: [1, H * D], data: q });
      const denseT = b.attention(qt, 0, [{ cache: plain, row: 0, count: 1, pos: CAP - 1 }], H, scale);
      dense = await b.read(denseT);
      for (const t of [denseT, qt]) b.free(t);
      b.freeKVCache(plain);
    });
    afterAll(() => b.dispose());

    const step = (mode: SelectMode) => {
      const cache = b.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
      b.kvLoad(cache, 0, 0, { k: major(ctx.k), v: major(ctx.v) });
      const invFreq = b.upload({ dtype: 'f32', shape: [D / 2], data: new Float32Array(D / 2) });
      const fc = new FixedContext(
        b,
        { layers: 1, heads: H, kvHeads: KVH, headDim: D, scale },
        [{ offset: 0, n: N, index: ix }],
        mode,
        invFreq,
        undefined,
        [fixedMajor(ctx.k)],
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

    it('everything kept equals dense attention', () => {
      for (const fused of [true, false]) {
        const all = step({ kind: 'budget', fraction: 1, fused });
        expect(all.stats.fraction).toBe(1);
        expect(relativeError(all.out, dense)).toBeLessThanOrEqual(1e-5);
      }
    });

    // clustered attention over the fixed context ⊕ the live tokens exactly: each group (the clusters,
    // cluster-major runs, and the window) as len·exp(q·mean key) with its mean value
    const clusteredAttention = (): Float32Array => {
      const km = major(ctx.k);
      const want = new Float32Array(H * D);
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / KVH));
        const hd = ix.heads[g];
        const groups: [number, number, Float32Array][] = [];
        for (let c = 0; c < hd.k; c++)
          groups.push([hd.starts[c], hd.starts[c + 1], hd.values!.subarray(c * D, (c + 1) * D)]);
        groups.push([N - ix.window, N, hd.win!.value!]);
        const terms: [number, Float32Array][] = []; // (log weight, value)
        for (const [a, b2, val] of groups) {
          if (b2 === a) continue;
          let s = 0;
          for (let e = 0; e < D; e++) {
            let m = 0;
            for (let p = a; p < b2; p++) m += km[(g * CAP + p) * D + e];
            s += (q[h * D + e] * m) / (b2 - a);
          }
          terms.push([s * scale + Math.log(b2 - a), val]);
        }
        for (let p = N; p < CAP; p++) {
          let s = 0;
          for (let e = 0; e < D; e++) s += q[h * D + e] * ctx.k[(g * CAP + p) * D + e];
          terms.push([s * scale, ctx.v.subarray((g * CAP + p) * D, (g * CAP + p + 1) * D)]);
        }
        const mx = Math.max(...terms.map(([l]) => l));
        let z = 0;
        const acc = new Float64Array(D);
        for (const [l, val] of terms) {
          const w = Math.exp(l - mx);
          z += w;
          for (let e = 0; e < D; e++) acc[e] += w * val[e];
        }
        for (let e = 0; e < D; e++) want[h * D + e] = acc[e] / z;
      }
      return want;
    };

    it('nothing kept equals clustered attention (each group as len·exp(q·mean key) with its mean value) ⊕ live tokens, with and without the prefilter', () => {
      // budget 0: only what is always attended — here nothing, so the window is approximated too; a
      // prefilter share below one key scores no group per key
      const want = clusteredAttention();
      for (const prefilter of [0, 1e-6]) {
        const none = step({ kind: 'budget', fraction: 1e-6, prefilter });
        expect(none.stats.keysAttended).toBe(0);
        // the mean keys are scored from their int8 copies (~1% of |q|·|mean|/127)
        expect(relativeError(none.out, want)).toBeLessThanOrEqual(2e-2);
      }
    });

    it('approximating the left-out keys is closer to dense than dropping them, at the same keys', () => {
      for (const fraction of [1 / 16, 1 / 8]) {
        const approx = step({ kind: 'budget', fraction });
        const drop = step({ kind: 'budget', fraction, approximate: false });
        expect(approx.stats.keysAttended).toBe(drop.stats.keysAttended);
        expect(approx.stats.fraction).toBeLessThanOrEqual(fraction);
        expect(relativeError(approx.out, dense)).toBeLessThan(relativeError(drop.out, dense));
      }
    });

    it('a step of two squeezed sequences and a dense one: fused equals the host path', () => {
      const run = (fused: boolean) => {
        const caches = [0, 1, 2].map(() =>
          b.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP }),
        );
        b.kvLoad(caches[0], 0, 0, { k: major(ctx.k), v: major(ctx.v) });
        b.kvLoad(caches[1], 0, 0, { k: major(ctx.k), v: major(ctx.v) });
        b.kvLoad(caches[2], 0, 0, { k: ctx.k, v: ctx.v });
        const invFreq = b.upload({ dtype: 'f32', shape: [D / 2], data: new Float32Array(D / 2) });
        const fcs = [1 / 8, 1 / 16].map(
          (fraction) =>
            new FixedContext(
              b,
              { layers: 1, heads: H, kvHeads: KVH, headDim: D, scale },
              [{ offset: 0, n: N, index: ix }],
              { kind: 'budget', fraction, fused },
              invFreq,
              undefined,
              [fixedMajor(ctx.k)],
            ),
        );
        const q3 = new Float32Array(3 * H * D);
        for (let r = 0; r < 3; r++) q3.set(q, r * H * D);
        const qt = b.upload({ dtype: 'f32', shape: [3, H * D], data: q3 });
        const spans = caches.map((cache, row) => ({ cache, row, count: 1, pos: CAP - 1 }));
        const outT = attendLayer(
          b,
          qt,
          0,
          spans,
          [{ kind: 'ranges', source: fcs[0] }, { kind: 'ranges', source: fcs[1] }, null],
          H,
          scale,
        );
        const out = b.readNow(outT);
        const keys = fcs.map((f) => f.stats.keysAttended);
        for (const t of [outT, qt, invFreq]) b.free(t);
        for (const f of fcs) f.dispose();
        for (const c of caches) b.freeKVCache(c);
        return { out, keys };
      };
      const fused = run(true);
      const host = run(false);
      expect(fused.keys).toEqual(host.keys);
      expect(relativeError(fused.out, host.out)).toBeLessThanOrEqual(1e-5);
      // the dense row is dense attention
      expect(relativeError(fused.out.subarray(2 * H * D), dense)).toBeLessThanOrEqual(1e-5);
    });

    it('the fused step equals the host path (keys kept and output) at every ISA level', async () => {
      const load = name === 'native' ? await loadNativeKernels() : null;
      const levels = load?.ok ? load.kernels.info().levels : [null];
      const was = load?.ok ? load.kernels.info().level : null;
      const modes: SelectMode[] = [
        { kind: 'budget', fraction: 1 / 8 },
        { kind: 'budget', fraction: 1 / 8, prefilter: 0 },
        { kind: 'budget', fraction: 1 / 16, prefilter: 0.25 },
        { kind: 'budget', fraction: 1 / 8, prefilter: 3 / 8, approximate: false },
        { kind: 'budget', fraction: 1 / 16, approximate: false },
        { kind: 'budget', fraction: 1 / 3, perHead: [0.2, 0.46] },
        { kind: 'threshold', tau: 2 },
        // channel subsets (D = 16: 2 and 1 of 4 quads), with the left-out share's group remainder
        { kind: 'budget', fraction: 1 / 8, channels: 8 },
        { kind: 'budget', fraction: 1 / 16, channels: 4, prefilter: 0.25 },
        { kind: 'budget', fraction: 1 / 8, channels: 4, approximate: false },
        { kind: 'threshold', tau: 2, channels: 8 },
      ];
      try {
        for (const level of levels) {
          if (level && load?.ok) load.kernels.configure({ level });
          for (const mode of modes) {
            const fused = step(mode);
            const host = step({ ...mode, fused: false });
            expect(fused.stats.keysAttended).toBe(host.stats.keysAttended);
            expect(relativeError(fused.out, host.out)).toBeLessThanOrEqual(1e-5);
          }
        }
      } finally {
        if (was && load?.ok) load.kernels.configure({ level: was });
      }
    });
  });
}

keysSuite('reference');
if (await nativeBackendAvailable()) keysSuite('native');

// The fused steps of a span's layer run in one addon call, one step per (row, kv head) over the addon's
// pool (native-step.ts, src/squeezed-driver.cc): each step writes only its own rows, so any thread count
// gives what the steps give one by one; a bad step is refused before any runs.
if (await nativeBackendAvailable())
  describe("squeezed steps over the addon's pool", () => {
    const KVH3 = 3;
    const H6 = 6;
    const ROWS = 5;
    const ctx = syntheticContext({ cap: CAP, kvHeads: KVH3, headDim: D, topics: 24, seed: 33 });
    const q = syntheticQueries(ctx, {
      rows: ROWS + 1,
      heads: H6,
      kvHeads: KVH3,
      headDim: D,
      topics: 24,
      seed: 9,
    });
    const { ix, fixedMajor, major } = clustered(ctx, ctx.k, ctx.v, KVH3);
    let b: Backend;
    let kernels: NativeKernels;
    beforeAll(async () => {
      b = await createBackend('native', { threads: 2 });
      const load = await loadNativeKernels();
      if (!load.ok) throw new Error(load.reason);
      kernels = load.kernels;
    });
    afterAll(() => b.dispose());

    /**
     * Rows 1 … ROWS of q ([ROWS + 1][H6·D]) attended by the fused steps on a `threads` pool: as one span of
     * ROWS rows (one call), or one span per row → the output and each step's (ti, keys) in call order.
     */
    const attend = (threads: number, rule: KeepRule, prefilter: number, perRow: boolean) => {
      kernels.configure({ threads });
      const cache = b.createKVCache({ layers: 1, kvHeads: KVH3, headDim: D, capacity: CAP });
      b.kvLoad(cache, 0, 0, { k: major(ctx.k), v: major(ctx.v) });
      const keys = fixedMajor(ctx.k);
      const blocks = [{ offset: 0, n: N, index: ix }];
      const sketches = Array.from({ length: KVH3 }, (_, g) =>
        buildKeySketch(keys.subarray(g * N * D, (g + 1) * N * D), blocks, 0, g, D),
      );
      const fused = NativeSketches.of(b, sketches)!;
      const qt = b.upload({ dtype: 'f32', shape: [ROWS + 1, H6 * D], data: q });
      const pos = CAP - ROWS;
      const spans = perRow
        ? Array.from({ length: ROWS }, (_, r) => ({ cache, row: 1 + r, count: 1, pos: pos + r }))
        : [{ cache, row: 1, count: ROWS, pos }];
      const kept: [number, number][] = [];
      let out: Tensor | undefined;
      for (const span of spans)
        out = fused.attend(
          qt,
          0,
          span,
          H6,
          scale,
          () => rule,
          (ti, k) => kept.push([ti, k]),
          true,
          prefilter,
          2,
          out,
        );
      const y = b.readNow(out!);
      b.free(out!);
      b.free(qt);
      fused.free();
      b.freeKVCache(cache);
      return { y, kept };
    };

    it('a multi-row span on 2 threads gives what 1 thread gives step by step, bit for bit', () => {
      const rules: [KeepRule, number][] = [
        [{ take: 80, tau: 0 }, 0],
        [{ take: 40, tau: 0 }, 0.25],
        [{ take: -1, tau: 2 }, 0],
      ];
      try {
        for (const [rule, pre] of rules) {
          const one = attend(1, rule, pre, true);
          // every row and kv head attended, each keeping keys
          expect(one.kept.map(([ti]) => ti)).toEqual(Array.from({ length: ROWS * KVH3 }, (_, j) => j % KVH3));
          expect(one.kept.every(([, k]) => k > 0)).toBe(true);
          expect(one.y.subarray(0, H6 * D).every((x) => x === 0)).toBe(true);
          for (const [threads, perRow] of [
            [2, false],
            [1, false],
            [2, true],
          ] as const) {
            const got = attend(threads, rule, pre, perRow);
            expect(got.kept).toEqual(one.kept);
            expect(got.y).toEqual(one.y);
          }
        }
      } finally {
        kernels.configure({ threads: 2 });
      }
    });

    it("refuses a bad step with the driver's error before any step runs", () => {
      // steps over a scratch memory: q / out rows only, an empty context (n = 0, no live tokens)
      const mem = new Uint8Array(4096);
      const G = 2;
      const rowBytes = G * D * 4;
      const step = (out: number): NativeSqueezedStep => ({
        q: 0,
        out,
        G,
        headDim: D,
        scale,
        k8: 0,
        perm: 1024,
        cw: 0,
        ks: 0,
        grp: 0,
        n: 0,
        gvals: 0,
        groups: 0,
        K: 0,
        V: 0,
        always: 0,
        alwaysPairs: 0,
        end: 0,
        take: 0,
        tau: 0,
        gStart: 0,
        gLen: 0,
        gm8: 0,
        gmsum: 0,
        gms: 0,
        gs8: 0,
        gssum: 0,
        gss: 0,
        want: -1,
        kvType: 0,
        Ks: 0,
        Vs: 0,
        quads: 4,
        gq: 0,
        gqs: 0,
      });
      new Int32Array(mem.buffer, 1024, D).set(Array.from({ length: D }, (_, i) => i));
      const sentinel = 2048;
      mem.fill(7, sentinel, sentinel + rowBytes);
      const kept = new Int32Array(2);
      const run = (steps: NativeSqueezedStep[]) => () => kernels.squeezedSteps(mem, steps, kept);
      expect(run([step(sentinel), step(mem.length - rowBytes + 4)])).toThrow(
        /squeezedSteps: step 1: out: bytes \[\d+, \d+\) outside the memory/,
      );
      expect(run([step(sentinel), { ...step(sentinel + rowBytes), perm: 0 }])).toThrow(
        /squeezedSteps: step 1: perm must be a permutation/,
      );
      expect(run([step(sentinel), step(sentinel + rowBytes - 4)])).toThrow(/overlapping out rows/);
      // 16 slots (k8, scales, K / V at 0) whose groups sit at 3072: one names group 0 of none
      const grp = new Int32Array(mem.buffer, 3072, 16).fill(-1);
      grp[9] = 0;
      const slots = { n: 16, end: 16, grp: 3072 };
      expect(run([step(sentinel), { ...step(sentinel + rowBytes), ...slots }])).toThrow(
        /squeezedSteps: step 1: a slot's group is outside \[−1, groups\)/,
      );
      // the left-out share scores the groups' mean keys: mean values without them are refused
      expect(run([step(sentinel), { ...step(sentinel + rowBytes), gvals: 3072 }])).toThrow(
        /squeezedSteps: step 1: the left-out share \(gvals\) needs the groups' mean keys/,
      );
      // step 0 was valid but never ran
      expect(mem.subarray(sentinel, sentinel + rowBytes).every((x) => x === 7)).toBe(true);
      expect(() => kernels.squeezedSteps(mem, [step(sentinel)], kept)).toThrow(/one entry per step/);
    });
  });

// A runner's native backend keeps int8 caches by default (KVRAG_NATIVE_KV_DTYPE; f16 or f32 on request),
// squeezed requests' too (reuse/assemble.ts): the fused step reads f16 and int8 K/V rows as it reads f32
// ones, and equals the host path (keysFor + attentionRanges over widened K/V) on each.
if (await nativeBackendAvailable())
  describe('squeezed attention over a native backend with f16 and int8 caches', () => {
    it('fuses over f16 and int8 caches as over an f32 one, each equal to the host path over it', async () => {
      const b16 = await createBackend('native', { threads: 2, kvDType: 'f16' });
      const b32 = await createBackend('native', { threads: 2, kvDType: 'f32' });
      const b8 = await createBackend('native', { threads: 2, kvDType: 'int8' });
      try {
        const ctx = syntheticContext({ cap: CAP, kvHeads: KVH, headDim: D, topics: 24, seed: 21 });
        const q = syntheticQueries(ctx, { rows: 1, heads: H, kvHeads: KVH, headDim: D, topics: 24, seed: 5 });
        // values exact in f16, so the f16 cache holds the same K/V as the f32 one
        const r16 = (x: Float32Array) => f16ToF32(f32ToF16(x));
        const k = r16(ctx.k);
        const v = r16(ctx.v);
        const { ix, fixedMajor, major } = clustered(ctx, k, v);
        const spec = { layers: 1, kvHeads: KVH, headDim: D, capacity: CAP };
        const run = (b: Backend, fused: boolean) => {
          const cache = b.createKVCache(spec);
          b.kvLoad(cache, 0, 0, { k: major(k), v: major(v) });
          const invFreq = b.upload({ dtype: 'f32', shape: [D / 2], data: new Float32Array(D / 2) });
          const fc = new FixedContext(
            b,
            { layers: 1, heads: H, kvHeads: KVH, headDim: D, scale },
            [{ offset: 0, n: N, index: ix }],
            { kind: 'budget', fraction: 1 / 8, fused },
            invFreq,
            undefined,
            [fixedMajor(k)],
          );
          const qt = b.upload({ dtype: 'f32', shape: [1, H * D], data: q });
          const span = { cache, row: 0, count: 1, pos: CAP - 1 };
          const fuses = fc.fuses(span);
          const outT = attendLayer(b, qt, 0, [span], [{ kind: 'ranges', source: fc }], H, scale);
          const out = b.readNow(outT);
          const kept = fc.stats.keysAttended;
          for (const t of [outT, qt, invFreq]) b.free(t);
          fc.dispose();
          b.freeKVCache(cache);
          return { fuses, out, kept };
        };
        const exact = run(b32, true);
        const half = run(b16, true);
        const host = run(b32, false);
        const halfHost = run(b16, false);
        const q8 = run(b8, true);
        const q8Host = run(b8, false);
        expect([exact.fuses, half.fuses, q8.fuses, host.fuses, halfHost.fuses, q8Host.fuses]).toEqual([
          true,
          true,
          true,
          false,
          false,
          false,
        ]);
        expect(q8.kept).toBe(host.kept);
        expect(q8Host.kept).toBe(host.kept);
        expect(relativeError(q8.out, q8Host.out)).toBeLessThanOrEqual(1e-5);
        // int8 rows (a scale per row, max |x| / 127) are not the f32 values: only close to them
        expect(relativeError(q8.out, host.out)).toBeLessThanOrEqual(0.05);
        expect(exact.kept).toBe(host.kept);
        expect(half.kept).toBe(host.kept);
        expect(halfHost.kept).toBe(host.kept);
        expect(relativeError(exact.out, host.out)).toBeLessThanOrEqual(1e-5);
        expect(relativeError(half.out, halfHost.out)).toBeLessThanOrEqual(1e-5);
        expect(relativeError(half.out, host.out)).toBeLessThanOrEqual(1e-5);
      } finally {
        b16.dispose();
        b32.dispose();
        b8.dispose();
      }
    });
  });
