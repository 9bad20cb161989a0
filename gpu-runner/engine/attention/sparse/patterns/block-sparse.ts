// Block-sparse (MInference): mean-pooled query blocks against mean-pooled key blocks of 64; each query
// block keeps its top-k key blocks by pooled attention (summed over the kv head's query group) plus its
// own (diagonal) block and the first block.
import type { SpanEstimator } from '../estimate.ts';
import { blockPositions, mergeRanges, queryBlocks } from '../ranges.ts';
import { type HeadSelection, PLAN_BLOCK, QUERY_BLOCK, type SpanGeom } from '../types.ts';

/** Pooled attention of query block b over key blocks for kv head g: summed over the group's heads. */
export function groupBlockScores(
  P: Float32Array,
  g: number,
  group: number,
  nbq: number,
  nbk: number,
  b: number,
): Float64Array {
  const s = new Float64Array(nbk);
  for (let h = g * group; h < (g + 1) * group; h++) {
    const o = (h * nbq + b) * nbk;
    for (let j = 0; j < nbk; j++) s[j] += P[o + j];
  }
  return s;
}

/** Merged ranges of key blocks `blocks` (of size B), clipped to `limit`. */
export function blocksToRanges(blocks: Iterable<number>, B: number, limit: number): Int32Array {
  const pairs: number[] = [];
  for (const j of blocks) pairs.push(j * B, (j + 1) * B);
  return mergeRanges(pairs, limit);
}

export function blockSparseSelection(est: SpanEstimator, g: number, topk: number): HeadSelection {
  const B = QUERY_BLOCK;
  const geom = est.geom;
  const group = geom.heads / geom.kvHeads;
  const P = est.pooledProbs(B);
  const { nbq, nbk } = est.blockCounts(B);
  const ranges: Int32Array[] = [];
  for (let b = 0; b < nbq; b++) {
    const [p0, p1] = blockPositions(geom, B, b);
    const own = Math.floor((p1 - 1) / B);
    const first = Math.floor(p0 / B); // rows of an unaligned span reach two key blocks
    const s = groupBlockScores(P, g, group, nbq, nbk, b);
    const cand = Array.from({ length: own }, (_, j) => j).filter((j) => j > 0);
    cand.sort((x, y) => s[y] - s[x] || x - y);
    const keep = new Set([0, first, own, ...cand.filter((j) => j !== first).slice(0, topk)]);
    ranges.push(blocksToRanges(keep, B, p1));
  }
  return { ...toPlanBlocks(geom, ranges, B), used: 'block-sparse' };
}

/** Ranges chosen per query block of B rows, as plan blocks of PLAN_BLOCK rows (each its block's, clipped). */
export function toPlanBlocks(
  geom: SpanGeom,
  perBlock: readonly Int32Array[],
  B: number,
): { ranges: Int32Array[]; columns: Int32Array[] } {
  const ranges: Int32Array[] = [];
  const columns: Int32Array[] = [];
  for (let b = 0; b < queryBlocks(geom.count, PLAN_BLOCK); b++) {
    const [, p1] = blockPositions(geom, PLAN_BLOCK, b);
    ranges.push(mergeRanges(Array.from(perBlock[Math.floor((b * PLAN_BLOCK) / B)]), p1));
    columns.push(new Int32Array(0));
  }
  return { ranges, columns };
}
