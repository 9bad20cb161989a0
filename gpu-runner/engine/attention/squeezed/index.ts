// The squeezed-attention index of one chunk artifact (DESIGN.md §4.2): per (layer, kv head), k-means
// over the L2-normalised keys of positions [0, n − W) — the last W (observation window) are never
// clustered and always attended — with centroids = means of the raw keys, so q·c estimates the
// cluster's logits. Built once at precompute and stored as the artifact's index section, with each
// cluster's radius (for bound-aware selection) and mean value (for the dropped clusters' approximated
// share), and the same summary of the window's keys (so the window of a block that does not end the
// fixed context can be selected like a cluster).
import { encodeIndex } from './codec.ts';
import { type Assigner, kmeans } from './kmeans.ts';
import type { ClusterIndex, HeadClusters, HeadIndex, SqueezedIndex, WindowSummary } from './types.ts';

export interface IndexOptions {
  /** clusters = ceil(pc · clustered keys); default 0.1 (clusters of ~10 keys: a budget of 1/8 holds enough). */
  pc?: number;
  /** observation window W; default 64. */
  window?: number;
  seed?: number;
  /** Lloyd iterations at most; default 8. */
  iters?: number;
  /** k-means++ seeds from at most max(k, seedSample) sampled keys; default 3·k. */
  seedSample?: number;
  assign?: Assigner;
}

export const DEFAULT_PC = 0.1;
export const DEFAULT_WINDOW = 64;

/**
 * Index of one head. keys, values: [n][d] raw keys and values of that (layer, kv head); [0, clustered)
 * are clustered, [clustered, n) is the window (summarised). Without values no value means are kept.
 */
export function buildHeadIndex(
  keys: Float32Array,
  clustered: number,
  d: number,
  opts: IndexOptions = {},
  values: Float32Array | null = null,
): HeadIndex {
  const n = keys.length / d;
  if (clustered === 0) {
    const empty = {
      k: 0,
      centroids: new Float32Array(0),
      starts: new Int32Array(1),
      order: new Int32Array(0),
    };
    return { ...empty, ...summariseClusters(empty, keys, values, n, d) };
  }
  const k = Math.min(clustered, Math.ceil((opts.pc ?? DEFAULT_PC) * clustered));
  const unit = new Float32Array(clustered * d);
  for (let i = 0; i < clustered; i++) {
    let s = 0;
    for (let e = 0; e < d; e++) s += keys[i * d + e] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let e = 0; e < d; e++) unit[i * d + e] = keys[i * d + e] * inv;
  }
  const labels = kmeans(unit, clustered, d, k, {
    seed: opts.seed ?? 1,
    iters: opts.iters ?? 8,
    seedSample: opts.seedSample ?? 3 * k,
    assign: opts.assign,
  });
  // Drop empty clusters, then group positions by cluster and average the raw keys.
  const count = new Int32Array(k);
  for (const c of labels) count[c]++;
  const remap = new Int32Array(k).fill(-1);
  let kept = 0;
  for (let c = 0; c < k; c++) if (count[c] > 0) remap[c] = kept++;
  const starts = new Int32Array(kept + 1);
  for (let c = 0; c < k; c++) if (remap[c] >= 0) starts[remap[c] + 1] = count[c];
  for (let c = 0; c < kept; c++) starts[c + 1] += starts[c];
  const fill = starts.slice(0, kept);
  const order = new Int32Array(clustered);
  for (let i = 0; i < clustered; i++) order[fill[remap[labels[i]]]++] = i;
  const members = { k: kept, starts, order };
  const grouped = groupSimilarClusters(
    { ...members, centroids: rowMeans(members, keys, d) },
    d,
    opts.seed ?? 1,
  );
  return { ...grouped, ...summariseClusters(grouped, keys, values, n, d) };
}

type Clusters = Pick<HeadIndex, 'k' | 'centroids' | 'starts' | 'order'>;

/** Each cluster's mean row of x [k][d] (summed in f64, members in order): centroids of keys, value means. x: [n][d]. */
function rowMeans(h: HeadClusters, keys: Float32Array, d: number): Float32Array {
  const sum = new Float64Array(d);
  const centroids = new Float32Array(h.k * d);
  for (let c = 0; c < h.k; c++) {
    sum.fill(0);
    for (let t = h.starts[c]; t < h.starts[c + 1]; t++) {
      const p = h.order[t] * d;
      for (let e = 0; e < d; e++) sum[e] += keys[p + e];
    }
    const size = h.starts[c + 1] - h.starts[c];
    for (let e = 0; e < d; e++) centroids[c * d + e] = sum[e] / size;
  }
  return centroids;
}

/**
 * A stored v3 index made whole (codec.ts): each head's centroids, radii, value means and window summary
 * derived from the artifact's own K/V. layers[l].k, .v: [kv_head][n][head_dim], the decoded artifact.
 */
export function completeIndex(
  ix: ClusterIndex,
  layers: readonly { k: Float32Array; v: Float32Array }[],
): SqueezedIndex {
  const { n, kvHeads, headDim: d } = ix;
  if (layers.length !== ix.layers)
    throw new Error(`completeIndex: ${layers.length} layers, index ${ix.layers}`);
  const heads = ix.heads.map((h, hi) => {
    const l = Math.floor(hi / kvHeads);
    const g = hi % kvHeads;
    const keys = layers[l].k.subarray(g * n * d, (g + 1) * n * d);
    const values = layers[l].v.subarray(g * n * d, (g + 1) * n * d);
    if (keys.length !== n * d)
      throw new Error(`completeIndex: layer ${l} keys are not [${kvHeads}][${n}][${d}]`);
    const clusters = { ...h, centroids: rowMeans(h, keys, d) };
    return { ...clusters, ...summariseClusters(clusters, keys, values, n, d) };
  });
  return { ...ix, heads };
}

/** Pair radii and mean value of each cluster of h and of the window [clustered, n). keys, values: [n][d]. */
export function summariseClusters(
  h: Clusters,
  keys: Float32Array,
  values: Float32Array | null,
  n: number,
  d: number,
): Pick<HeadIndex, 'radius' | 'values' | 'win'> {
  const { k, centroids, starts, order } = h;
  const half = d / 2;
  const radius = new Float32Array(k * half);
  for (let c = 0; c < k; c++)
    pairRadii(keys, order, starts[c], starts[c + 1], centroids, c * d, d, radius, c * half);
  const clustered = order.length;
  let win: WindowSummary | null = null;
  if (n > clustered) {
    const self = {
      k: 1,
      starts: Int32Array.of(0, n - clustered),
      order: Int32Array.from({ length: n - clustered }, (_, i) => clustered + i),
    };
    const centroid = rowMeans(self, keys, d);
    const r = new Float32Array(half);
    pairRadii(keys, self.order, 0, n - clustered, centroid, 0, d, r, 0);
    win = { centroid, radius: r, value: values ? rowMeans(self, values, d) : null };
  }
  return { radius, values: values ? rowMeans(h, values, d) : null, win };
}

/**
 * Per RoPE pair i (channels i, i + d/2) the largest ‖(key − c) on pair i‖ over the keys at positions
 * order[t0..t1), into r[ro..ro + d/2); c: the centroid at c[co..]. keys: [n][d].
 */
function pairRadii(
  keys: Float32Array,
  order: Int32Array,
  t0: number,
  t1: number,
  c: Float32Array,
  co: number,
  d: number,
  r: Float32Array,
  ro: number,
): void {
  const half = d / 2;
  const r2 = new Float64Array(half); // squared: one square root per pair at the end
  for (let t = t0; t < t1; t++) {
    const at = order[t] * d;
    for (let i = 0; i < half; i++) {
      const a = keys[at + i] - c[co + i];
      const b = keys[at + i + half] - c[co + i + half];
      const s = a * a + b * b;
      if (s > r2[i]) r2[i] = s;
    }
  }
  for (let i = 0; i < half; i++) r[ro + i] = Math.sqrt(r2[i]);
}

/**
 * Renumbers clusters so that similar ones are adjacent: a second k-means (√k groups) over the
 * normalised centroids, clusters ordered by group. A query's selected clusters then tend to be
 * neighbours, so in the cluster-major layout (layout.ts) they form longer runs of consecutive keys.
 */
function groupSimilarClusters(h: Clusters, d: number, seed: number): Clusters {
  const { k } = h;
  if (k < 16) return h;
  const unit = new Float32Array(k * d);
  for (let c = 0; c < k; c++) {
    let s = 0;
    for (let e = 0; e < d; e++) s += h.centroids[c * d + e] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let e = 0; e < d; e++) unit[c * d + e] = h.centroids[c * d + e] * inv;
  }
  const groups = kmeans(unit, k, d, Math.ceil(Math.sqrt(k)), { seed: seed + 7919, iters: 8, seedSample: k });
  const rank = Array.from({ length: k }, (_, c) => c).sort((a, b) => groups[a] - groups[b] || a - b);
  const centroids = new Float32Array(k * d);
  const starts = new Int32Array(k + 1);
  const order = new Int32Array(h.order.length);
  rank.forEach((c, i) => {
    centroids.set(h.centroids.subarray(c * d, (c + 1) * d), i * d);
    const members = h.order.subarray(h.starts[c], h.starts[c + 1]);
    order.set(members, starts[i]);
    starts[i + 1] = starts[i] + members.length;
  });
  return { k, centroids, starts, order };
}

/**
 * Index of a whole artifact. layers[l].k, .v: [kv_head][n][head_dim] (the artifact's LayerKV); without
 * v the index has no value means (and encodes as format v1).
 */
export function buildIndex(
  layers: readonly { k: Float32Array; v?: Float32Array }[],
  geom: { n: number; kvHeads: number; headDim: number },
  opts: IndexOptions = {},
): SqueezedIndex {
  const { n, kvHeads, headDim: d } = geom;
  const window = Math.min(n, opts.window ?? DEFAULT_WINDOW);
  const clustered = n - window;
  const heads: HeadIndex[] = [];
  layers.forEach((layer, l) => {
    if (layer.k.length !== kvHeads * n * d)
      throw new Error(`layer ${l}: keys are not [${kvHeads}][${n}][${d}]`);
    for (let g = 0; g < kvHeads; g++) {
      const keys = layer.k.subarray(g * n * d, (g + 1) * n * d);
      const values = layer.v ? layer.v.subarray(g * n * d, (g + 1) * n * d) : null;
      const seed = (opts.seed ?? 1) + l * 1009 + g;
      heads.push(buildHeadIndex(keys, clustered, d, { ...opts, seed }, values));
    }
  });
  return { n, window, layers: layers.length, kvHeads, headDim: d, heads };
}

/**
 * The precompute hook: builds the index of an artifact's layers and serialises it, ready for
 * encodeArtifact(meta, layers, buildIndexSection(layers, meta)).
 */
export function buildIndexSection(
  layers: readonly { k: Float32Array; v?: Float32Array }[],
  meta: { tokenIds: readonly number[]; kvHeads: number; headDim: number },
  opts: IndexOptions = {},
): Uint8Array {
  return encodeIndex(
    buildIndex(layers, { n: meta.tokenIds.length, kvHeads: meta.kvHeads, headDim: meta.headDim }, opts),
  );
}
