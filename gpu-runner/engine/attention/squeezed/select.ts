// Online cluster selection (DESIGN.md §4.2) for one layer and one query block (a question's prefill
// rows, or the single row of a decode step). Per-key score of cluster c for one query q:
//   p̂_c = exp(q·c_c·scale) / Σ_c' n_c'·exp(q·c_c'·scale)
// (the estimated softmax weight of each key of c; n_c·p̂_c is the cluster's estimated mass). A kv head's
// score is the mean of p̂ over its query group's heads and the block's rows (GQA: one selection serves
// the whole group). Threshold mode keeps clusters with m·p̂ ≥ τ, m = the clustered keys (τ is relative
// to the uniform weight 1/m, so one τ serves contexts of any length); budget mode keeps the best clusters
// by p̂ until a fraction of the fixed-context keys (window included) is reached. The window is always kept.
import { clusterSize, type HeadIndex, type SqueezedIndex } from './types.ts';

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
 * Mean per-key score p̂ of every cluster of head h from dots [count][k] = q·c (unscaled), one row per
 * (query row, query head of the group).
 */
export function scoreFromDots(h: HeadIndex, dots: Float32Array, count: number, scale: number): Float32Array {
  const { k, starts } = h;
  const score = new Float32Array(k);
  const w = new Float32Array(k);
  for (let r = 0; r < count; r++) {
    const o = r * k;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < k; j++) if (dots[o + j] > max) max = dots[o + j];
    let z = 0;
    for (let j = 0; j < k; j++) {
      const e = Math.exp((dots[o + j] - max) * scale);
      w[j] = e;
      z += (starts[j + 1] - starts[j]) * e;
    }
    const inv = 1 / (z * count);
    for (let j = 0; j < k; j++) score[j] += w[j] * inv;
  }
  return score;
}

/** Mean per-key score p̂ of every cluster of head h for kv head g's query group. q: [rows][heads·headDim]. */
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
  const { k, centroids: c } = h;
  const group = heads / kvHeads;
  const dots = new Float32Array(rows * group * k);
  for (let i = 0; i < rows; i++)
    for (let t = 0; t < group; t++) {
      const qo = (i * heads + g * group + t) * headDim;
      const o = (i * group + t) * k;
      for (let j = 0; j < k; j++) {
        const co = j * headDim;
        let s = 0;
        for (let e = 0; e < headDim; e++) s += q[qo + e] * c[co + e];
        dots[o + j] = s;
      }
    }
  return scoreFromDots(h, dots, rows * group, scale);
}

/** Which clusters to keep given their scores (n: fixed-context keys; window: keys always kept). */
export function chooseClusters(
  h: Pick<HeadIndex, 'k' | 'starts'>,
  score: Float32Array,
  n: number,
  window: number,
  mode: SelectMode,
): number[] {
  const kept: number[] = [];
  if (mode.kind === 'threshold') {
    const clustered = n - window;
    for (let j = 0; j < h.k; j++) if (score[j] * clustered >= mode.tau) kept.push(j);
    return kept;
  }
  const target = Math.ceil(mode.fraction * n) - window;
  if (target <= 0) return kept;
  // The best clusters by score until the target: all clusters scoring ≥ the largest cut that still
  // reaches it. Exact, in O(k): positive f32 scores order like their bit patterns, so a histogram of
  // cluster sizes over the top 12 bits finds the bucket where the cut falls, and only that bucket's
  // clusters are sorted.
  const bits = new Uint32Array(score.buffer, score.byteOffset, score.length);
  const size = (j: number) => h.starts[j + 1] - h.starts[j];
  hist.fill(0);
  for (let j = 0; j < h.k; j++) hist[Math.min(bits[j] >>> SHIFT, BUCKETS - 1)] += size(j);
  let have = 0;
  let bucket = BUCKETS - 1;
  for (; bucket >= 0; bucket--) {
    if (have + hist[bucket] >= target) break;
    have += hist[bucket];
  }
  if (bucket < 0) return Array.from({ length: h.k }, (_, j) => j); // every cluster is not enough
  const edge: number[] = [];
  for (let j = 0; j < h.k; j++) if (Math.min(bits[j] >>> SHIFT, BUCKETS - 1) === bucket) edge.push(j);
  edge.sort((a, b) => bits[b] - bits[a]);
  let cut = 0;
  for (const j of edge) {
    have += size(j);
    cut = bits[j];
    if (have >= target) break;
  }
  for (let j = 0; j < h.k; j++) if (bits[j] >= cut) kept.push(j);
  return kept;
}

const SHIFT = 20;
const BUCKETS = (0x7f800000 >>> SHIFT) + 1; // up to +inf
const hist = new Float64Array(BUCKETS);

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
