// Key-set helpers of sparse prefill: unions of [start, end) ranges, columns outside them, the full
// (dense) plan, and the density of a plan (keys attended ÷ keys a dense causal prefill attends).
import type { SeqSpan, SparsePlan } from '../../backends/types.ts';
import type { HeadSelection, SpanGeom } from './types.ts';

/** Union of [start, end) intervals (flat pairs, any order) clipped to [0, limit), sorted and merged. */
export function mergeRanges(pairs: readonly number[], limit: number): Int32Array {
  const iv: [number, number][] = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const s = Math.max(0, pairs[i]);
    const e = Math.min(limit, pairs[i + 1]);
    if (e > s) iv.push([s, e]);
  }
  iv.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [s, e] of iv) {
    const n = out.length;
    if (n > 0 && s <= out[n - 1]) out[n - 1] = Math.max(out[n - 1], e);
    else out.push(s, e);
  }
  return Int32Array.from(out);
}

/** The sorted, distinct positions of `cols` below `limit` that no range of `ranges` covers. */
export function columnsOutside(cols: ArrayLike<number>, ranges: Int32Array, limit: number): Int32Array {
  const sorted = Int32Array.from(cols).sort();
  const out: number[] = [];
  let r = 0;
  for (let i = 0; i < sorted.length; i++) {
    const p = sorted[i];
    if (p >= limit || p < 0 || (i > 0 && sorted[i - 1] === p)) continue;
    while (r + 1 < ranges.length && ranges[r + 1] <= p) r += 2;
    if (r + 1 < ranges.length && ranges[r] <= p) continue;
    out.push(p);
  }
  return Int32Array.from(out);
}

/** Number of query blocks of a span. */
export function queryBlocks(count: number, blockSize: number): number {
  return Math.ceil(count / blockSize);
}

/** Positions [first, end) of query block b (end exclusive): keys a causal block can see end at `end`. */
export function blockPositions(g: SpanGeom, blockSize: number, b: number): [number, number] {
  return [g.pos0 + b * blockSize, g.pos0 + Math.min(g.count, (b + 1) * blockSize)];
}

/** Every key up to each block's last row: sparseAttention with it equals dense attention. */
export function fullSelection(g: SpanGeom, blockSize: number): HeadSelection {
  const n = queryBlocks(g.count, blockSize);
  const ranges: Int32Array[] = [];
  const columns: Int32Array[] = [];
  for (let b = 0; b < n; b++) {
    ranges.push(Int32Array.of(0, blockPositions(g, blockSize, b)[1]));
    columns.push(new Int32Array(0));
  }
  return { ranges, columns, used: 'dense' };
}

export function toPlan(sel: readonly HeadSelection[], blockSize: number): SparsePlan {
  return { blockSize, ranges: sel.map((s) => s.ranges), columns: sel.map((s) => s.columns) };
}

export function spanGeom(
  span: SeqSpan,
  heads: number,
  kvHeads: number,
  headDim: number,
  scale: number,
): SpanGeom {
  return { heads, kvHeads, headDim, scale, count: span.count, pos0: span.pos };
}

/**
 * Density: causal (query, key) pairs the plan attends ÷ those dense attention attends, over every
 * query row and kv head (each kv head's selection serves its whole query group alike).
 */
export function planDensity(plan: SparsePlan, g: SpanGeom): number {
  let kept = 0;
  let dense = 0;
  for (let h = 0; h < plan.ranges.length; h++)
    for (let b = 0; b < plan.ranges[h].length; b++) {
      const [p0, p1] = blockPositions(g, plan.blockSize, b);
      const rs = plan.ranges[h][b];
      dense += rowsKeys(p0, p1, 0, p1);
      for (let i = 0; i + 1 < rs.length; i += 2) kept += rowsKeys(p0, p1, rs[i], rs[i + 1]);
      for (const c of plan.columns[h][b]) kept += Math.max(0, p1 - Math.max(c, p0));
    }
  return dense > 0 ? kept / dense : 1;
}

/** Σ over rows p ∈ [p0, p1) of |[s, e) ∩ [0, p]|. */
function rowsKeys(p0: number, p1: number, s: number, e: number): number {
  if (e <= s) return 0;
  let total = 0;
  // rows p < e − 1 see min(p + 1, e) − s = p + 1 − s keys when p ≥ s; rows p ≥ e − 1 see e − s
  const a = Math.max(p0, s);
  const mid = Math.min(p1, e - 1);
  if (mid > a) total += ((mid - a) * (a + 1 - s + mid - s)) / 2; // Σ_{p=a}^{mid-1} (p + 1 − s)
  const full = p1 - Math.max(p0, e - 1);
  if (full > 0) total += full * (e - s);
  return total;
}
