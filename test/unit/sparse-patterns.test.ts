// Sparse prefill's patterns (DESIGN.md §4.3) on constructed inputs with a planted structure, on the
// reference backend: every query attends to one key column (a planted vertical) or to the key 100
// positions back (a planted diagonal). Vertical-Slash finds the column / the offset, block-sparse and
// FlexPrefill keep the blocks holding them, A-shape keeps sinks + window; density and attention-mass
// recall are measured against the dense oracle (the full plan's log-sum-exp).
import { describe, expect, it } from 'vitest';
import { SpanEstimator } from '../../gpu-runner/engine/attention/sparse/estimate.ts';
import { massRecall } from '../../gpu-runner/engine/attention/sparse/metrics.ts';
import { jsDistance } from '../../gpu-runner/engine/attention/sparse/patterns/flexprefill.ts';
import { verticalSlashMass } from '../../gpu-runner/engine/attention/sparse/patterns/vertical-slash.ts';
import { fullSelection, planDensity, toPlan } from '../../gpu-runner/engine/attention/sparse/ranges.ts';
import { selectPlan } from '../../gpu-runner/engine/attention/sparse/select.ts';
import {
  defaultParams,
  type PatternParams,
  type SpanGeom,
} from '../../gpu-runner/engine/attention/sparse/types.ts';
import { createReferenceBackend } from '../../gpu-runner/engine/backends/reference/index.ts';
import type { SparsePlan } from '../../gpu-runner/engine/backends/types.ts';
import { rand } from '../helpers/wasm-runtime.ts';

const H = 4;
const KVH = 2;
const D = 32;
const N = 640;
const SCALE = 1 / Math.sqrt(D);
const geom: SpanGeom = { heads: H, kvHeads: KVH, headDim: D, scale: SCALE, count: N, pos0: 0 };
const SHIFT = 100;
const COLUMN = 300;

/**
 * Unit-norm random keys [kv_head][pos][d]; `blocky`: each 64-position block's keys share a direction
 * (what mean pooling can see: block-sparse finds blocks, not single keys).
 */
function keys(seed: number, blocky: boolean): Float32Array {
  const k = rand(KVH * N * D, seed);
  if (blocky) {
    const u = rand(KVH * (N / 64) * D, seed + 1, 3);
    for (let g = 0; g < KVH; g++)
      for (let j = 0; j < N; j++)
        for (let e = 0; e < D; e++) k[(g * N + j) * D + e] += u[(g * (N / 64) + Math.floor(j / 64)) * D + e];
  }
  for (let r = 0; r < KVH * N; r++) {
    let s = 0;
    for (let e = 0; e < D; e++) s += k[r * D + e] ** 2;
    for (let e = 0; e < D; e++) k[r * D + e] /= Math.sqrt(s);
  }
  return k;
}

/** Queries aimed at key target(i) of their kv head (score ≈ 12 there, |score| ≲ 4 elsewhere). */
function queries(k: Float32Array, target: (i: number) => number): Float32Array {
  const q = rand(N * H * D, 9, 0.05);
  for (let i = 0; i < N; i++)
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / KVH));
      const t = target(i);
      if (t < 0) continue;
      for (let e = 0; e < D; e++) q[(i * H + h) * D + e] += (12 / SCALE) * k[(g * N + t) * D + e];
    }
  return q;
}

function setup(target: (i: number) => number, blocky = false) {
  const b = createReferenceBackend();
  const cache = b.createKVCache({ layers: 1, kvHeads: KVH, headDim: D, capacity: N });
  const k = keys(5, blocky);
  b.kvLoad(cache, 0, 0, { k, v: rand(KVH * N * D, 6) });
  const q = b.upload({ dtype: 'f32', shape: [N, H * D], data: queries(k, target) });
  const span = { cache, row: 0, count: N, pos: 0 };
  const est = new SpanEstimator(b, q, 0, span, geom);
  const lse = (plan: SparsePlan) => {
    const r = b.sparseAttention?.(q, 0, span, plan, H, SCALE);
    if (!r) throw new Error('no sparseAttention');
    return b.readNow?.(r.lse) ?? new Float32Array(0);
  };
  const full = fullSelection(geom, 64);
  const denseLse = lse(toPlan([full, full], 64));
  const run = (p: PatternParams) => {
    const { plan, used } = selectPlan(est, [p, p]);
    return { plan, used, recall: massRecall(lse(plan), denseLse), density: planDensity(plan, geom) };
  };
  return { est, run };
}

/** Whether position j is kept for query row i of kv head g. */
const keptRow = (plan: SparsePlan, g: number, i: number, j: number) => {
  const b = Math.floor(i / plan.blockSize);
  const rs = plan.ranges[g][b];
  for (let r = 0; r < rs.length; r += 2) if (rs[r] <= j && j < rs[r + 1]) return true;
  return plan.columns[g][b].includes(j);
};
/** Whether position j is kept for every row of the 64-row block b of kv head g. */
const kept = (plan: SparsePlan, g: number, b: number, j: number) =>
  Array.from({ length: 64 }, (_, t) => b * 64 + t).every((i) => keptRow(plan, g, i, j));

describe('sparse prefill patterns on a planted vertical column', () => {
  const { est, run } = setup((i) => Math.min(i, COLUMN));

  it('vertical-slash: the column has the most mass and is kept by every block past it', () => {
    const { vert } = verticalSlashMass(est, 1, 64);
    const top = vert.indexOf(Math.max(...vert));
    expect(top).toBe(COLUMN);
    const r = run({ pattern: 'vertical-slash', vertical: 8, slash: 64, last: 64 });
    for (let b = Math.floor(COLUMN / 64) + 2; b < N / 64; b++)
      for (let g = 0; g < KVH; g++) expect(r.plan.columns[g][(b * 64) / r.plan.blockSize]).toContain(COLUMN); // gathered
    expect(r.recall).toBeGreaterThan(0.95);
    expect(r.density).toBeLessThan(0.3);
  });

  it('FlexPrefill keeps the column (vertical-slash branch: the pooled estimate cannot see one key)', () => {
    const fp = run(defaultParams('flexprefill'));
    expect(fp.used).toContain('flexprefill:vertical-slash');
    for (let b = Math.floor(COLUMN / 64) + 1; b < N / 64; b++) expect(kept(fp.plan, 1, b, COLUMN)).toBe(true);
    expect(fp.recall).toBeGreaterThan(0.95);
    expect(fp.density).toBeLessThan(0.75); // γ 0.95 of the slash mass of a column is a wide band
  });

  it('A-shape (window only) misses it: low recall, density of its window', () => {
    const a = run({ pattern: 'a-shape', sink: 0, local: 64 });
    expect(a.recall).toBeLessThan(0.8);
    expect(a.density).toBeLessThan(0.4);
  });
});

describe('sparse prefill patterns on a planted diagonal', () => {
  const { est, run } = setup((i) => (i >= SHIFT ? i - SHIFT : i));

  it('vertical-slash: offset 100 has the most slash mass and each block keeps its band', () => {
    const { slash } = verticalSlashMass(est, 0, 64);
    expect(slash.indexOf(Math.max(...slash))).toBe(SHIFT);
    const r = run({ pattern: 'vertical-slash', vertical: 4, slash: 65, last: 64 });
    for (let b = 2; b < N / 64; b++)
      for (let i = b * 64; i < (b + 1) * 64; i++) expect(keptRow(r.plan, 0, i, i - SHIFT)).toBe(true);
    expect(r.recall).toBeGreaterThan(0.95);
    expect(r.density).toBeLessThan(0.5);
  });

  it('FlexPrefill keeps the diagonal band with recall ≥ 0.95', () => {
    const fp = run(defaultParams('flexprefill'));
    for (let i = 128; i < N; i++) expect(keptRow(fp.plan, 0, i, i - SHIFT)).toBe(true);
    expect(fp.recall).toBeGreaterThan(0.95);
    expect(fp.density).toBeLessThan(0.6);
  });

  it('A-shape with a window past the shift has full recall', () => {
    const a = run({ pattern: 'a-shape', sink: 0, local: 128 });
    expect(a.recall).toBeGreaterThan(0.98);
  });
});

describe('FlexPrefill helpers', () => {
  it('Jensen–Shannon distance: 0 for equal, ln 2 bound for disjoint', () => {
    expect(jsDistance([1, 2, 3], [2, 4, 6])).toBeCloseTo(0, 12);
    expect(jsDistance([1, 0], [0, 1])).toBeCloseTo(Math.sqrt(Math.LN2), 12);
  });
});

describe('block-level planted structure (keys of a 64-block share a direction)', () => {
  const col = setup((i) => (i >= COLUMN + 64 ? COLUMN : i), true);
  const diag = setup((i) => (i >= 128 ? i - 128 : i), true);

  it('block-sparse keeps the planted column block and the diagonal two blocks back', () => {
    const c = col.run({ pattern: 'block-sparse', topk: 1 });
    const d = diag.run({ pattern: 'block-sparse', topk: 1 });
    for (let b = Math.ceil((COLUMN + 64) / 64); b < N / 64; b++)
      for (let g = 0; g < KVH; g++) expect([b, g, kept(c.plan, g, b, COLUMN)]).toEqual([b, g, true]);
    for (let b = 3; b < N / 64; b++)
      for (let g = 0; g < KVH; g++) expect([b, g, kept(d.plan, g, b, b * 64 - 128)]).toEqual([b, g, true]);
    expect(c.recall).toBeGreaterThan(0.95);
    expect(d.recall).toBeGreaterThan(0.95);
    expect(d.density).toBeLessThan(0.6);
  });
});
