// FlexPrefill (Lai et al. 2025): per kv head, compare the true attention of the span's last block of
// queries (pooled into key blocks) with the pooled-query estimate â of that block. If they agree —
// sqrt(Jensen–Shannon divergence) < τ — the head is "query-aware": each query block keeps the fewest
// key blocks whose pooled attention reaches γ. Otherwise it keeps the fewest columns and the fewest
// diagonals whose attention (from the last block of queries) reaches γ each: a Vertical-Slash head with
// a budget that adapts to the input. Blocks of `block` (128) rows/positions; the kernel's query blocks
// of 16 use their enclosing 128-block's selection.
import type { SpanEstimator } from '../estimate.ts';
import type { HeadSelection } from '../types.ts';
import { blocksToRanges, groupBlockScores, toPlanBlocks } from './block-sparse.ts';
import {
  FORCED_COLUMNS,
  FORCED_DIAGONALS,
  verticalSlashMass,
  verticalSlashToSelection,
} from './vertical-slash.ts';

/** sqrt of the Jensen–Shannon divergence (natural log) of two distributions (each normalised here). */
export function jsDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let za = 0;
  let zb = 0;
  for (let i = 0; i < a.length; i++) {
    za += a[i];
    zb += b[i];
  }
  let js = 0;
  for (let i = 0; i < a.length; i++) {
    const p = a[i] / za;
    const q = b[i] / zb;
    const m = (p + q) / 2;
    if (p > 0) js += 0.5 * p * Math.log(p / m);
    if (q > 0) js += 0.5 * q * Math.log(q / m);
  }
  return Math.sqrt(Math.max(0, js));
}

/** Indices by descending x, the fewest whose sum reaches gamma·Σx (at least minCount), forced ones first. */
export function cumulativeIndices(
  x: ArrayLike<number>,
  gamma: number,
  minCount: number,
  forced: readonly number[] = [],
): number[] {
  let total = 0;
  for (let i = 0; i < x.length; i++) total += x[i];
  const keep = new Set(forced);
  let sum = 0;
  for (const i of keep) sum += x[i] ?? 0;
  const order = Array.from({ length: x.length }, (_, i) => i).filter((i) => !keep.has(i));
  order.sort((a, b) => x[b] - x[a] || a - b);
  for (const i of order) {
    if (sum >= gamma * total && keep.size >= minCount) break;
    keep.add(i);
    sum += x[i];
  }
  return [...keep];
}

export interface FlexDecision {
  /** sqrt JS divergence between the pooled estimate and the true pooled attention of the last block */
  distance: number;
  queryAware: boolean;
}

export function flexPrefillSelection(
  est: SpanEstimator,
  g: number,
  gamma: number,
  tau: number,
  B: number,
  minBudget: number,
): HeadSelection & FlexDecision {
  const geom = est.geom;
  const group = geom.heads / geom.kvHeads;
  const { nbq, nbk } = est.blockCounts(B);
  const L = Math.min(B, geom.count);
  // ā: true attention of the last L queries, summed per key block
  const { vert, slash } = verticalSlashMass(est, g, L);
  const aBar = new Float64Array(nbk);
  for (let j = 0; j < est.nk; j++) aBar[Math.floor(j / B)] += vert[j];
  // â: the pooled estimate for the last query block
  const P = est.pooledProbs(B);
  const aHat = groupBlockScores(P, g, group, nbq, nbk, nbq - 1);
  const distance = jsDistance(aBar, aHat);
  const queryAware = distance < tau;
  if (!queryAware) {
    const cols = cumulativeIndices(vert, gamma, minBudget, range(Math.min(FORCED_COLUMNS, est.nk)));
    const offs = cumulativeIndices(slash, gamma, minBudget, range(Math.min(FORCED_DIAGONALS, est.nk)));
    const sel = verticalSlashToSelection(
      geom,
      Int32Array.from(cols),
      Int32Array.from(offs),
      'flexprefill:vertical-slash',
    );
    return { ...sel, distance, queryAware };
  }
  const perBlock: Int32Array[] = [];
  for (let b = 0; b < nbq; b++) {
    const last = geom.pos0 + Math.min(geom.count, (b + 1) * B) - 1;
    const own = Math.floor(last / B);
    const s = groupBlockScores(P, g, group, nbq, nbk, b).subarray(0, own + 1);
    const first = Math.floor((geom.pos0 + b * B) / B); // rows of an unaligned span reach two blocks
    const keep = cumulativeIndices(s, gamma, minBudget, [...new Set([own, first, 0])]);
    perBlock.push(blocksToRanges(keep, B, last + 1));
  }
  const { ranges, columns } = toPlanBlocks(geom, perBlock, B);
  return { ranges, columns, used: 'flexprefill:query-aware', distance, queryAware };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
