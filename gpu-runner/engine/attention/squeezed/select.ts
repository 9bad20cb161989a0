// Online cluster selection (DESIGN.md §4.2) for one layer and one query block (a question's prefill
// rows, or the single row of a decode step). Cluster logits s_c = q·c_c·scale + log n_c (a row softmax of
// them is the estimated mass n_c·p̂_c of each cluster). Bound-aware score of cluster c for one query q:
//   u_c = exp(q·c_c·scale + λ·Σ_i ‖q_i‖·r_ci·scale) / Σ_c' n_c'·exp(q·c_c'·scale)
// over the RoPE pairs i (channels i, i + d/2), r_ci the cluster's radius on pair i (max over members of
// ‖(k − c_c)_i‖), so with λ = 1 the numerator bounds the weight of every member from above (per pair,
// q_i·k_i ≤ q_i·c_i + ‖q_i‖·‖(k − c)_i‖; RoPE rotates each pair, so the bound holds at any offset): one key
// that matches the query is never hidden by its cluster's mean. λ = 0 (or an index without radii) is the
// mean estimate p̂_c. A kv
// head's score is the mean of u over its query group's heads and the block's rows (GQA: one selection
// serves the whole group). Threshold mode keeps clusters with m·u ≥ τ, m = the clustered keys (τ is
// relative to the uniform weight 1/m, so one τ serves contexts of any length); budget mode keeps the best
// clusters by u until a fraction of the fixed-context keys (the always-kept window and live tokens
// included) is reached.
import { clusterSize, type HeadIndex, type SqueezedIndex } from './types.ts';

/**
 * approximate (default true): the dropped clusters join the softmax as their centroid key weighted by
 * their size, with their mean value (needs value means in the index). perHead: budget mode's fraction per
 * (layer, kv head) [layers·kvHeads] (headFractions), overriding `fraction` (their mean).
 */
export type SelectMode = (
  | { kind: 'threshold'; tau: number }
  | { kind: 'budget'; fraction: number; perHead?: readonly number[] }
) & {
  approximate?: boolean;
  scoring?: Scoring;
  /** false: never the fused native step (native-step.ts), always keysFor + attentionRanges */
  fused?: boolean;
  /**
   * per-key scoring's prefilter (key-sketch.ts): the share of the keys scored per key, from the
   * best-bounded groups, at least the budget's (default DEFAULT_PREFILTER = 0: every key scored)
   */
  prefilter?: number;
  /**
   * per-key scoring's channel subset (key-sketch.ts): the channels of a key scored, a multiple of 4
   * (default DEFAULT_SCORE_CHANNELS; ≥ head_dim = every channel)
   */
  channels?: number;
};

/** How a step ranks the fixed context: every key by its int8 copy (key-sketch.ts, the default where the
 * keys are given) or the clusters by their centroids. */
export type Scoring = 'keys' | 'clusters';

/**
 * λ: how much of the radius bound the score adds (1 = the upper bound, which on kvrag-tiny is so loose
 * that it ranks clusters by their radius; 0 = the mean, which hides the key a copying head needs). 0.4 was
 * the best of 0.15–0.7 at budget 1/8 on held-out episodes of a seed the eval does not use.
 */
export const BOUND_WEIGHT = 0.4;

export interface Selection {
  /** keys[g]: selected fixed-context positions (clusters + window) for kv head g. */
  keys: Int32Array[];
  /** fixed-context keys per kv head (n). */
  fixedKeys: number;
  /** centroid floats read to score (for bytes touched). */
  centroidFloats: number;
}

/**
 * Bound-aware per-key score u of each of k clusters, averaged over rows, from logits [rows][k] =
 * q·c·scale + log n_c. logN: [k]; extra: [rows][k] = Σ_i ‖q_i‖·r_ci·scale (boundExtra; null: the mean
 * estimate). lse (out, optional): [rows] log Σ_c exp(logits) per row. probs (optional): the logits' row
 * softmax, when a device computed it (then one exp per cluster and row instead of two).
 */
export function boundScores(
  logits: Float32Array,
  rows: number,
  k: number,
  logN: Float32Array,
  extra: Float32Array | null,
  lse?: Float32Array,
  probs?: Float32Array,
): Float32Array {
  const score = new Float32Array(k);
  for (let r = 0; r < rows; r++) {
    const o = r * k;
    let l: number;
    if (probs) {
      let best = 0;
      for (let j = 1; j < k; j++) if (probs[o + j] > probs[o + best]) best = j;
      l = logits[o + best] - Math.log(probs[o + best]); // p = exp(logit − lse), exact at the largest p
    } else {
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < k; j++) if (logits[o + j] > max) max = logits[o + j];
      let z = 0;
      for (let j = 0; j < k; j++) z += Math.exp(logits[o + j] - max);
      l = max + Math.log(z);
    }
    if (lse) lse[r] = l;
    const lift = (j: number) => (extra ? BOUND_WEIGHT * extra[o + j] : 0) - logN[j];
    if (probs) for (let j = 0; j < k; j++) score[j] += (probs[o + j] * Math.exp(lift(j))) / rows;
    else for (let j = 0; j < k; j++) score[j] += Math.exp(logits[o + j] + lift(j) - l) / rows;
  }
  return score;
}

/** ‖q_row's RoPE pair i‖·scale for rows [rows][d] of q → [rows][d/2]. */
export function queryBounds(q: Float32Array, rows: number, d: number, scale: number): Float32Array {
  const half = d / 2;
  const out = new Float32Array(rows * half);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < half; i++) out[r * half + i] = Math.hypot(q[r * d + i], q[r * d + i + half]) * scale;
  return out;
}

/** extra [rows][k] = bounds [rows][half] · radiusᵀ ([k][half]) on the host (the device does it as a matmul). */
export function boundExtra(
  bounds: Float32Array,
  radius: Float32Array,
  rows: number,
  k: number,
): Float32Array {
  const half = bounds.length / rows;
  const out = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let i = 0; i < half; i++) s += bounds[r * half + i] * radius[j * half + i];
      out[r * k + j] = s;
    }
  return out;
}

/** Bound-aware score of every cluster of head h for kv head g's query group. q: [rows][heads·headDim]. */
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
  const count = rows * group;
  const qa = new Float32Array(count * headDim);
  for (let i = 0; i < rows; i++) {
    const from = (i * heads + g * group) * headDim;
    qa.set(q.subarray(from, from + group * headDim), i * group * headDim);
  }
  const logN = Float32Array.from({ length: k }, (_, j) => Math.log(clusterSize(h, j)));
  const logits = new Float32Array(count * k);
  for (let r = 0; r < count; r++)
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let e = 0; e < headDim; e++) s += qa[r * headDim + e] * c[j * headDim + e];
      logits[r * k + j] = s * scale + logN[j];
    }
  const extra = h.radius ? boundExtra(queryBounds(qa, count, headDim, scale), h.radius, count, k) : null;
  return boundScores(logits, count, k, logN, extra);
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
  if (mode.fraction >= 1) return Array.from({ length: h.k }, (_, j) => j); // dense
  const target = Math.ceil(mode.fraction * n) - window; // window: every key kept besides clusters
  if (target <= 0) return kept;
  // The best clusters by score while they fit the target (it is never exceeded): in score order (ties by
  // number), stopping at the first that does not fit. In O(k): positive f32 scores order like their bit
  // patterns, so a histogram of cluster sizes over the top 12 bits finds the bucket where the cut falls,
  // and only that bucket's clusters are sorted.
  const bits = new Uint32Array(score.buffer, score.byteOffset, score.length);
  const size = (j: number) => h.starts[j + 1] - h.starts[j];
  const bucketOf = (j: number) => Math.min(bits[j] >>> SHIFT, BUCKETS - 1);
  hist.fill(0);
  for (let j = 0; j < h.k; j++) hist[bucketOf(j)] += size(j);
  let have = 0;
  let bucket = BUCKETS - 1;
  for (; bucket >= 0; bucket--) {
    if (have + hist[bucket] > target) break;
    have += hist[bucket];
  }
  if (bucket < 0) return Array.from({ length: h.k }, (_, j) => j); // every cluster fits
  const edge: number[] = [];
  for (let j = 0; j < h.k; j++) if (bucketOf(j) === bucket) edge.push(j);
  edge.sort((a, b) => bits[b] - bits[a] || a - b);
  const take = new Set<number>();
  for (const j of edge) {
    if (have + size(j) > target) break;
    have += size(j);
    take.add(j);
  }
  for (let j = 0; j < h.k; j++) if (bucketOf(j) > bucket || take.has(j)) kept.push(j);
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

/**
 * Budget fractions per head with the given weights (concentration calibration, mean 1) whose mean is
 * `fraction`: f_i = min(1, c·w_i), c chosen so Σ f_i = fraction × heads (what a head cannot use above 1
 * is spent on the others).
 */
export function headFractions(weights: readonly number[], fraction: number): number[] {
  const n = weights.length;
  if (n === 0) return [];
  if (weights.some((w) => !(w > 0))) throw new Error('head budget weights must be positive');
  if (fraction >= 1) return weights.map(() => 1);
  const total = fraction * n;
  const capped = new Set<number>();
  for (;;) {
    let free = 0;
    for (let i = 0; i < n; i++) if (!capped.has(i)) free += weights[i];
    const c = (total - capped.size) / free;
    let more = false;
    for (let i = 0; i < n; i++)
      if (!capped.has(i) && c * weights[i] > 1) {
        capped.add(i);
        more = true;
      }
    if (!more) return weights.map((w, i) => (capped.has(i) ? 1 : c * w));
  }
}
