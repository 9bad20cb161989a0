// Sparse prefill's kernel (Backend.sparseAttention, DESIGN.md §4.3) on the reference, wasm and webgpu backends:
// a full plan reproduces dense attention() (≤ 1e-5) and its lse recall is 1; a partial plan of ranges
// and gathered columns equals softmax attention over exactly those keys (f64 TS), on both backends; its
// density is the share of causal pairs it keeps and its recall the dense softmax mass on them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { massRecall } from '../../gpu-runner/engine/attention/sparse/metrics.ts';
import { fullSelection, planDensity, toPlan } from '../../gpu-runner/engine/attention/sparse/ranges.ts';
import type { SpanGeom } from '../../gpu-runner/engine/attention/sparse/types.ts';
import { createReferenceBackend } from '../../gpu-runner/engine/backends/reference/index.ts';
import type { Backend, KVCache, SeqSpan, SparsePlan } from '../../gpu-runner/engine/backends/types.ts';
import { createWasmBackend } from '../../gpu-runner/engine/backends/wasm/index.ts';
import { rand } from '../helpers/wasm-runtime.ts';
import { makeWebGPU } from '../helpers/webgpu.ts';

const H = 4;
const KVH = 2;
const D = 16;
const CAP = 300;
const POS = 40; // the span's queries sit at positions 40..40+COUNT-1 (a context before them)
const COUNT = 200; // 4 query blocks of 64, the last one partial
const SCALE = 1 / Math.sqrt(D);
const geom: SpanGeom = { heads: H, kvHeads: KVH, headDim: D, scale: SCALE, count: COUNT, pos0: POS };

const kHost = rand(KVH * CAP * D, 1, 2);
const vHost = rand(KVH * CAP * D, 2);
const qHost = rand(COUNT * H * D, 3, 2);

/** A plan with two ranges and some columns per (kv head, block), differing by head. */
function partialPlan(): SparsePlan {
  const ranges: Int32Array[][] = [];
  const columns: Int32Array[][] = [];
  for (let g = 0; g < KVH; g++) {
    ranges.push([]);
    columns.push([]);
    for (let b = 0; b < 4; b++) {
      const p0 = POS + b * 64;
      const p1 = POS + Math.min(COUNT, (b + 1) * 64);
      ranges[g].push(Int32Array.of(0, 8 + g, p0 - 20, p1));
      columns[g].push(
        Int32Array.from(
          [17 + g, 25, p0 - 30, p0 + 10].filter((c) => (c < p0 - 20 || c >= p1) && c < POS + COUNT),
        ),
      );
    }
  }
  return { blockSize: 64, ranges, columns };
}

/** The keys query row i of kv head g attends to under `plan`. */
function keysOf(plan: SparsePlan, g: number, i: number): number[] {
  const b = Math.floor(i / plan.blockSize);
  const p = POS + i;
  const out: number[] = [];
  const rs = plan.ranges[g][b];
  for (let r = 0; r < rs.length; r += 2) for (let j = rs[r]; j < Math.min(rs[r + 1], p + 1); j++) out.push(j);
  for (const c of plan.columns[g][b]) if (c <= p) out.push(c);
  return out;
}

function naive(plan: SparsePlan): Float32Array {
  const out = new Float32Array(COUNT * H * D);
  for (let i = 0; i < COUNT; i++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / KVH));
      const keys = keysOf(plan, g, i);
      const s = keys.map((j) => {
        let t = 0;
        for (let e = 0; e < D; e++) t += qHost[(i * H + h) * D + e] * kHost[(g * CAP + j) * D + e];
        return t * SCALE;
      });
      const m = Math.max(...s);
      const p = s.map((x) => Math.exp(x - m));
      const z = p.reduce((a, c) => a + c, 0);
      keys.forEach((j, n) => {
        for (let e = 0; e < D; e++) out[(i * H + h) * D + e] += (p[n] / z) * vHost[(g * CAP + j) * D + e];
      });
    }
  return out;
}

const maxAbs = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

describe.each(['reference', 'wasm', 'webgpu'])('sparseAttention on %s', (name) => {
  let b: Backend;
  let cache: KVCache;
  let span: SeqSpan;
  beforeAll(async () => {
    b =
      name === 'wasm'
        ? await createWasmBackend({ threads: 2, splitAll: true })
        : name === 'webgpu'
          ? await makeWebGPU()
          : createReferenceBackend();
    cache = b.createKVCache({ layers: 2, kvHeads: KVH, headDim: D, capacity: CAP });
    b.kvLoad(cache, 1, 0, { k: kHost, v: vHost });
    span = { cache, row: 0, count: COUNT, pos: POS };
  });
  afterAll(() => b.dispose());

  it('a full plan equals dense attention (≤ 1e-5) with recall 1 and density 1', async () => {
    const q = b.upload({ dtype: 'f32', shape: [COUNT, H * D], data: qHost });
    const full = fullSelection(geom, 64);
    const plan = toPlan([full, full], 64);
    const dense = await b.read(b.attention(q, 1, [span], H, SCALE));
    const s = b.sparseAttention?.(q, 1, span, plan, H, SCALE);
    if (!s) throw new Error('no sparseAttention');
    expect(maxAbs(await b.read(s.out), dense)).toBeLessThanOrEqual(1e-5);
    const lse = await b.read(s.lse);
    expect(massRecall(lse, lse)).toBe(1);
    expect(planDensity(plan, geom)).toBeCloseTo(1, 12);
  });

  it('a partial plan (ranges + gathered columns) equals softmax over exactly its keys', async () => {
    const q = b.upload({ dtype: 'f32', shape: [COUNT, H * D], data: qHost });
    const plan = partialPlan();
    const s = b.sparseAttention?.(q, 1, span, plan, H, SCALE);
    if (!s) throw new Error('no sparseAttention');
    expect(maxAbs(await b.read(s.out), naive(plan))).toBeLessThanOrEqual(2e-5);
    // recall = dense softmax mass on the kept keys; density = kept causal pairs ÷ all
    const full = fullSelection(geom, 64);
    const d = b.sparseAttention?.(q, 1, span, toPlan([full, full], 64), H, SCALE);
    if (!d) throw new Error('no sparseAttention');
    const recall = massRecall(await b.read(s.lse), await b.read(d.lse));
    expect(recall).toBeGreaterThan(0.05);
    expect(recall).toBeLessThan(1);
    let kept = 0;
    let all = 0;
    for (let g = 0; g < KVH; g++)
      for (let i = 0; i < COUNT; i++) {
        kept += keysOf(plan, g, i).length;
        all += POS + i + 1;
      }
    expect(planDensity(plan, geom)).toBeCloseTo(kept / all, 10);
  });

  it('refuses a plan of the wrong shape and ranges outside the span', () => {
    const q = b.upload({ dtype: 'f32', shape: [COUNT, H * D], data: qHost });
    const plan = partialPlan();
    expect(() =>
      b.sparseAttention?.(q, 1, span, { ...plan, ranges: plan.ranges.slice(1) }, H, SCALE),
    ).toThrow();
    const bad = partialPlan();
    bad.ranges[0][0] = Int32Array.of(0, POS + COUNT + 1);
    expect(() => b.sparseAttention?.(q, 1, span, bad, H, SCALE)).toThrow();
  });
});
