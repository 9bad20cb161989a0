// Online cluster selection (DESIGN.md §4.2) for one layer and one query block (a question's prefill
// rows, or the single row of a decode step). Per-key score of cluster c for one query q:
//   p̂_c = exp(q·c_c·scale) / Σ_c' n_c'·exp(q·c_c'·scale)
// (the estimated softmax weight of each key of c; n_c·p̂_c is the cluster's estimated mass). A kv head's
// score is the mean of p̂ over its query group's heads and the block's rows (GQA: one selection serves
// the whole group). Threshold mode keeps clusters with p̂ ≥ τ; budget mode keeps the best clusters by p̂
// until a fraction of the fixed-context keys (window included) is reached. The window is always kept.
import { z } from 'zod';
import { clusterSize, type HeadIndex, type SqueezedIndex } from './types.ts';

/** Per-request control of squeezed attention. */
export const squeezedControlSchema = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('off') }),
  /** tau: the calibrated global threshold unless given. */
  z.object({ mode: z.literal('threshold'), tau: z.number().positive().max(1).optional() }),
  z.object({ mode: z.literal('budget'), fraction: z.number().positive().max(1) }),
]);
export type SqueezedControl = z.infer<typeof squeezedControlSchema>;

export type SelectMode = { kind: 'threshold'; tau: number } | { kind: 'budget'; fraction: number };

export interface Selection {
  /** keys[g]: selected fixed-context positions (clusters + window) for kv head g. */
  keys: Int32Array[];
  /** fixed-context keys per kv head (n). */
  fixedKeys: number;
  /** centroid floats read to score (for bytes touched). */
  centroidFloats: number;
}

/**
 * Mean per-key score p̂ of every cluster of head h for kv head g's query group.
 * q: [rows][heads·headDim] host floats.
 */
export function scoreClusters(
  h: HeadIndex,
  q: Float32Array,
  rows: number,
  heads: number,
  kvHeads: number,
  g: number,
  headDim: number,
  scale: number,
): Float32Array {
  const { k, centroids: c, starts } = h;
  const group = heads / kvHeads;
  const score = new Float32Array(k);
  const logit = new Float32Array(k);
  for (let i = 0; i < rows; i++)
    for (let hq = g * group; hq < (g + 1) * group; hq++) {
      const qo = (i * heads + hq) * headDim;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < k; j++) {
        const co = j * headDim;
        let s = 0;
        for (let e = 0; e < headDim; e++) s += q[qo + e] * c[co + e];
        s *= scale;
        logit[j] = s;
        if (s > max) max = s;
      }
      let z = 0;
      for (let j = 0; j < k; j++) {
        const w = Math.exp(logit[j] - max);
        logit[j] = w;
        z += (starts[j + 1] - starts[j]) * w;
      }
      const inv = 1 / z;
      for (let j = 0; j < k; j++) score[j] += logit[j] * inv;
    }
  const mean = 1 / (rows * group);
  for (let j = 0; j < k; j++) score[j] *= mean;
  return score;
}

/** Which clusters to keep given their scores. */
export function chooseClusters(
  h: HeadIndex,
  score: Float32Array,
  n: number,
  window: number,
  mode: SelectMode,
): number[] {
  const kept: number[] = [];
  if (mode.kind === 'threshold') {
    for (let j = 0; j < h.k; j++) if (score[j] >= mode.tau) kept.push(j);
    return kept;
  }
  const target = Math.ceil(mode.fraction * n) - window;
  if (target <= 0) return kept;
  const byScore = Array.from({ length: h.k }, (_, j) => j).sort((a, b) => score[b] - score[a]);
  let have = 0;
  for (const j of byScore) {
    if (have >= target) break;
    kept.push(j);
    have += clusterSize(h, j);
  }
  return kept;
}

/** Selected positions: the kept clusters' members then the window [n − window, n). */
export function gatherKeys(h: HeadIndex, kept: readonly number[], n: number, window: number): Int32Array {
  let total = window;
  for (const j of kept) total += clusterSize(h, j);
  const out = new Int32Array(total);
  let at = 0;
  for (const j of kept) {
    out.set(h.order.subarray(h.starts[j], h.starts[j + 1]), at);
    at += h.starts[j + 1] - h.starts[j];
  }
  for (let p = n - window; p < n; p++) out[at++] = p;
  return out;
}

/** Selection of one layer for a query block. q: [rows][heads·headDim]; offset shifts positions (the chunk's place in the cache). */
export function selectLayer(
  ix: SqueezedIndex,
  layer: number,
  q: Float32Array,
  rows: number,
  heads: number,
  scale: number,
  mode: SelectMode,
  offset = 0,
): Selection {
  const keys: Int32Array[] = [];
  let centroidFloats = 0;
  for (let g = 0; g < ix.kvHeads; g++) {
    const h = ix.heads[layer * ix.kvHeads + g];
    const score = scoreClusters(h, q, rows, heads, ix.kvHeads, g, ix.headDim, scale);
    centroidFloats += h.k * ix.headDim;
    const sel = gatherKeys(h, chooseClusters(h, score, ix.n, ix.window, mode), ix.n, ix.window);
    if (offset !== 0) for (let i = 0; i < sel.length; i++) sel[i] += offset;
    keys.push(sel);
  }
  return { keys, fixedKeys: ix.n, centroidFloats };
}

/** Everything selected (the dense-equivalence case). */
export function selectAll(ix: Pick<SqueezedIndex, 'n' | 'kvHeads'>, offset = 0): Selection {
  const all = Int32Array.from({ length: ix.n }, (_, i) => i + offset);
  return { keys: Array.from({ length: ix.kvHeads }, () => all.slice()), fixedKeys: ix.n, centroidFloats: 0 };
}
