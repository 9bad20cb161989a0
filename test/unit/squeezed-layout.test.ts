// Cluster-major layout with device-resident centroids (layout.ts) on the wasm backend: the permuted
// fixed context with everything selected equals dense attention over the original layout (≤ 1e-5);
// the device scoring (matmul + softmax with log n_c bias) keeps the same keys as the host selection
// (select.ts) up to one boundary cluster; a budget of 1/8 on the permuted cache keeps its recall.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AttnGeom, squeezedAttentionWasm } from '../../gpu-runner/engine/attention/squeezed/attend.ts';
import { buildIndex } from '../../gpu-runner/engine/attention/squeezed/index.ts';
import { DeviceCentroids, toClusterMajor } from '../../gpu-runner/engine/attention/squeezed/layout.ts';
import { attentionRecall, relativeError } from '../../gpu-runner/engine/attention/squeezed/metrics.ts';
import { selectLayer } from '../../gpu-runner/engine/attention/squeezed/select.ts';
import {
  fixedKeys,
  syntheticContext,
  syntheticQueries,
} from '../../gpu-runner/engine/attention/squeezed/synthetic.ts';
import type { KVCache } from '../../gpu-runner/engine/backends/types.ts';
import {
  createWasmBackend,
  type WasmBackend,
  WasmAttentionOps,
} from '../../gpu-runner/engine/backends/wasm/index.ts';

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
  let ops: WasmAttentionOps;
  let plain: KVCache;
  let major: KVCache;
  let centroids: DeviceCentroids;
  const majorK = majorCache(ctx.k);
  const majorV = majorCache(ctx.v);
  beforeAll(async () => {
    wasm = await createWasmBackend({ threads: 2 });
    ops = new WasmAttentionOps(wasm);
    plain = wasm.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
    major = wasm.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: CAP });
    wasm.kvLoad(plain, 0, 0, { k: ctx.k, v: ctx.v });
    wasm.kvLoad(major, 0, 0, { k: majorK, v: majorV });
    centroids = new DeviceCentroids(ops, ix, geom.scale);
  });
  afterAll(() => {
    centroids.dispose();
    wasm.dispose();
  });

  const step = async (q: Float32Array, fraction: number) => {
    const qt = wasm.upload({ dtype: 'f32', shape: [1, H * D], data: q });
    const qh = wasm.upload({ dtype: 'f32', shape: [H, D], data: q });
    const sel = centroids.select(qh, H, 0, { kind: 'budget', fraction });
    const span = (cache: KVCache) => ({ cache, row: 0, count: 1, pos: CAP - 1 });
    const r = squeezedAttentionWasm(ops, qt, span(major), 0, N, sel, geom);
    const d = wasm.attention(qt, 0, [span(plain)], H, geom.scale);
    const out = { sel, squeezed: await wasm.read(r.out), dense: await wasm.read(d) };
    for (const t of [qt, qh, r.out, r.lse, d]) wasm.free(t);
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
