// Vertical-Slash (MInference): from the exact attention of the span's last queries, the key columns
// and the diagonals (offset = query position − key position) that gather the most attention; each query
// block then keeps its diagonals as key ranges (the band [p0 − o, p1 − o) of every kept offset o, merged)
// and the kept columns outside those ranges as gathered keys. The first 4 columns (sinks) and the first
// 64 diagonals (the local window) are always kept. Per kv head: the group's query heads' attention is summed.
import type { SpanEstimator } from '../estimate.ts';
import { blockPositions, columnsOutside, queryBlocks } from '../ranges.ts';
import { type HeadSelection, PLAN_BLOCK, type SpanGeom } from '../types.ts';

export const FORCED_COLUMNS = 4;
export const FORCED_DIAGONALS = 64;

/** Per kv head g: attention mass of the last L queries per column and per diagonal offset, each summed
 * over the group's heads and the L queries and divided by (group · L) (so each sums to 1). */
export function verticalSlashMass(
  est: SpanEstimator,
  g: number,
  L: number,
): { vert: Float64Array; slash: Float64Array } {
  const { heads, kvHeads } = est.geom;
  const group = heads / kvHeads;
  const nk = est.nk;
  const P = est.lastProbs(L);
  const vert = new Float64Array(nk);
  const slash = new Float64Array(nk);
  for (let h = g * group; h < (g + 1) * group; h++)
    for (let i = 0; i < L; i++) {
      const pos = nk - L + i;
      const o = (h * L + i) * nk;
      for (let j = 0; j <= pos; j++) {
        const p = P[o + j];
        vert[j] += p;
        slash[pos - j] += p;
      }
    }
  const norm = 1 / (group * L);
  for (let j = 0; j < nk; j++) {
    vert[j] *= norm;
    slash[j] *= norm;
  }
  return { vert, slash };
}

/** Indices of the k largest values (ties by lower index), with `forced` indices 0..forced-1 first. */
export function topIndices(x: Float64Array, k: number, forced: number): Int32Array {
  const idx = Array.from({ length: x.length }, (_, i) => i).filter((i) => i >= forced);
  idx.sort((a, b) => x[b] - x[a] || a - b);
  const f = Math.min(forced, x.length);
  return Int32Array.from([...Array.from({ length: f }, (_, i) => i), ...idx.slice(0, Math.max(0, k - f))]);
}

/** The selection of kept columns and diagonal offsets for query blocks of PLAN_BLOCK rows. */
export function verticalSlashToSelection(
  g: SpanGeom,
  cols: Int32Array,
  offsets: Int32Array,
  used: string,
): HeadSelection {
  const ranges: Int32Array[] = [];
  const columns: Int32Array[] = [];
  const sortedCols = Int32Array.from(cols).sort();
  const desc = Int32Array.from(offsets).sort().reverse(); // band starts p0 − o ascending
  const pairs: number[] = [];
  for (let b = 0; b < queryBlocks(g.count, PLAN_BLOCK); b++) {
    const [p0, p1] = blockPositions(g, PLAN_BLOCK, b);
    pairs.length = 0;
    for (const o of desc) {
      const s = Math.max(0, p0 - o);
      const e = Math.min(p1, p1 - o);
      if (e <= s) continue;
      const n = pairs.length;
      if (n > 0 && s <= pairs[n - 1]) pairs[n - 1] = Math.max(pairs[n - 1], e);
      else pairs.push(s, e);
    }
    const rs = Int32Array.from(pairs);
    ranges.push(rs);
    columns.push(columnsOutside(sortedCols, rs, p1));
  }
  return { ranges, columns, used };
}

export function verticalSlashSelection(
  est: SpanEstimator,
  g: number,
  vertical: number,
  slash: number,
  last: number,
): HeadSelection {
  const L = Math.min(last, est.geom.count);
  const m = verticalSlashMass(est, g, L);
  const cols = topIndices(m.vert, vertical, FORCED_COLUMNS);
  const offs = topIndices(m.slash, slash, FORCED_DIAGONALS);
  return verticalSlashToSelection(est.geom, cols, offs, 'vertical-slash');
}
