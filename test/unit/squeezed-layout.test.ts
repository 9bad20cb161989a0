// Cluster-major layout (layout.ts) with the engine's squeezed step on wasm — FixedContext scoring its
// device centroid table and listing key ranges, Backend.attentionRanges attending over them: the
// permuted fixed context with everything selected equals dense attention over the original layout
// (≤ 1e-5); the device scoring keeps the same keys as the host selection (select.ts) up to one boundary
// cluster, with the same recall.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttnGeom } from '../../gpu-runner/engine/attention/squeezed/attend.ts';
import { FixedContext } from '../../gpu-runner/engine/attention/squeezed/fixed-context.ts';
import { buildIndex } from '../../gpu-runner/engine/attention/squeezed/index.ts';
import { toClusterMajor } from '../../gpu-runner/engine/attention/squeezed/layout.ts';
import { attentionRecall, relativeError } from '../../gpu-runner/engine/attention/squeezed/metrics.ts';
import { type Selection, selectLayer } from '../../gpu-runner/engine/attention/squeezed/select.ts';
import {
  fixedKeys,
  syntheticContext,
  syntheticQueries,
} from '../../gpu-runner/engine/attention/squeezed/synthetic.ts';
import type { KVCache, Tensor } from '../../gpu-runner/engine/backends/types.ts';
import { createWasmBackend, type WasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';

const N = 3000;
const LIVE = 8;
const CAP = N + LIVE;
const H = 8;
const KVH = 2;
const D = 32;
const TOPICS = 60;
const geom: AttnGeom = { heads: H, kvHeads: KVH, headDim: D, scale: 1 / Math.sqrt(D) };
const ctx = syntheticContext({ cap: CAP, kvHeads: KVH, headDim: D, topics: TOPICS, seed: 3 });
const ix = buildIndex([{ k: fixedKeys(ctx, KVH, N, D) }], { n: N, kvHeads: KVH, headDim: D });

/** [kv_head][CAP][d] with [0, N) rearranged cluster-major. */
function majorCache(x: Float32Array): Float32Array {
  const major = toClusterMajor(ix, 0, fixedKeys({ ...ctx, k: x }, KVH, N, D));
  const out = x.slice();
  for (let g = 0; g < KVH; g++) out.set(major.subarray(g * N * D, (g + 1) * N * D), g * CAP * D);
  return out;
}

describe('squeezed attention, cluster-major layout on wasm', () => {
  let wasm: WasmBackend;
  let plain: KVCache;
  let major: KVCache;
  let invFreq: Tensor;
  const majorK = majorCache(ctx.k);
  const majorV = majorCache(ctx.v);
  beforeAll(async () => {
    wasm = await createWasmBackend({ threads: 2 });
    plain = wasm.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
    major = wasm.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
    wasm.kvLoad(plain, 0, 0, { k: ctx.k, v: ctx.v });
    wasm.kvLoad(major, 0, 0, { k: majorK, v: majorV });
    // the block sits at offset 0: its centroids are rotated by Δ = 0
    invFreq = wasm.upload({ dtype: 'f32', shape: [D / 2], data: new Float32Array(D / 2) });
  });
  afterAll(() => wasm.dispose());

  /** One decode step over the permuted cache through a FixedContext of `fraction`, and dense on the plain one. */
  const step = async (q: Float32Array, fraction: number) => {
    const fc = new FixedContext(
      wasm,
      { layers: 1, ...geom },
      [{ offset: 0, n: N, index: ix }],
      { kind: 'budget', fraction },
      invFreq,
    );
    const qt = wasm.upload({ dtype: 'f32', shape: [1, H * D], data: q });
    const span = (cache: KVCache) => ({ cache, row: 0, count: 1, pos: CAP - 1 });
    const ranges = fc.keysFor(q, span(major), 0).keys;
    const r = wasm.attentionRanges(qt, 0, [span(major)], [ranges], H, geom.scale);
    const d = wasm.attention(qt, 0, [span(plain)], H, geom.scale);
    // the selection as slots of the fixed context (the live range [N, CAP) left out)
    const keys = ranges.map((rs) => {
      const slots: number[] = [];
      for (let i = 0; i < rs.length; i += 2)
        for (let t = rs[i]; t < Math.min(rs[i + 1], N); t++) slots.push(t);
      return Int32Array.from(slots);
    });
    const sel: Selection = { keys, fixedKeys: N, centroidFloats: 0 };
    const out = { sel, squeezed: await wasm.read(r), dense: await wasm.read(d) };
    for (const t of [qt, r, d]) wasm.free(t);
    fc.dispose();
    return out;
  };

  it('everything selected on the permuted cache equals dense on the original (≤ 1e-5)', async () => {
    const q = syntheticQueries(ctx, { rows: 1, heads: H, kvHeads: KVH, headDim: D, topics: TOPICS, seed: 1 });
    const { sel, squeezed, dense } = await step(q, 1);
    expect(sel.keys.every((k) => k.length === N)).toBe(true);
    expect(relativeError(squeezed, dense)).toBeLessThanOrEqual(1e-5);
  });

  it('device scoring keeps the host selection’s keys (up to one boundary cluster) and its recall', async () => {
    for (let seed = 2; seed < 6; seed++) {
      const q = syntheticQueries(ctx, { rows: 1, heads: H, kvHeads: KVH, headDim: D, topics: TOPICS, seed });
      const { sel, squeezed, dense } = await step(q, 1 / 8);
      const host = selectLayer(ix, 0, q, 1, H, geom.scale, { kind: 'budget', fraction: 1 / 8 });
      for (let g = 0; g < KVH; g++) {
        const h = ix.heads[g];
        let largest = 0;
        for (let c = 0; c < h.k; c++) largest = Math.max(largest, h.starts[c + 1] - h.starts[c]);
        // slot t < N − W holds position order[t]; the window keeps its positions
        const positions = new Set([...sel.keys[g]].map((t) => (t < h.order.length ? h.order[t] : t)));
        const want = new Set(host.keys[g]);
        const diff =
          [...positions].filter((p) => !want.has(p)).length +
          [...want].filter((p) => !positions.has(p)).length;
        expect(diff).toBeLessThanOrEqual(2 * largest);
      }
      const layer = { k: majorK, v: majorV, cap: CAP };
      const recall = attentionRecall(q, 1, geom, layer, N, sel).mean;
      const hostRecall = attentionRecall(q, 1, geom, { k: ctx.k, v: ctx.v, cap: CAP }, N, host).mean;
      expect(recall).toBeCloseTo(hostRecall, 2);
      expect(relativeError(squeezed, dense)).toBeLessThan(0.3);
    }
  });
});
