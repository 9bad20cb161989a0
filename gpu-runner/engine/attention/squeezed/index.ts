// The squeezed-attention index of one chunk artifact (DESIGN.md §4.2): per (layer, kv head), k-means
// over the L2-normalised keys of positions [0, n − W) — the last W (observation window) are never
// clustered and always attended — with centroids = means of the raw keys, so q·c estimates the
// cluster's logits. Built once at precompute and stored as the artifact's index section.
import { encodeIndex } from './codec.ts';
import { type Assigner, kmeans } from './kmeans.ts';
import type { HeadIndex, SqueezedIndex } from './types.ts';

export interface IndexOptions {
  /** clusters = ceil(pc · clustered keys); default 0.05. */
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

export const DEFAULT_PC = 0.05;
export const DEFAULT_WINDOW = 64;

/** Index of one head. keys: [n][d] raw keys of that (layer, kv head); only [0, clustered) are used. */
export function buildHeadIndex(
  keys: Float32Array,
  clustered: number,
  d: number,
  opts: IndexOptions = {},
): HeadIndex {
  if (clustered === 0)
    return { k: 0, centroids: new Float32Array(0), starts: new Int32Array(1), order: new Int32Array(0) };
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
  const sum = new Float64Array(kept * d);
  for (let i = 0; i < clustered; i++) {
    const c = remap[labels[i]];
    order[fill[c]++] = i;
    for (let e = 0; e < d; e++) sum[c * d + e] += keys[i * d + e];
  }
  const centroids = new Float32Array(kept * d);
  for (let c = 0; c < kept; c++) {
    const size = starts[c + 1] - starts[c];
    for (let e = 0; e < d; e++) centroids[c * d + e] = sum[c * d + e] / size;
  }
  return groupSimilarClusters({ k: kept, centroids, starts, order }, d, opts.seed ?? 1);
}

/**
 * Renumbers clusters so that similar ones are adjacent: a second k-means (√k groups) over the
 * normalised centroids, clusters ordered by group. A query's selected clusters then tend to be
 * neighbours, so in the cluster-major layout (layout.ts) they form longer runs of consecutive keys.
 */
function groupSimilarClusters(h: HeadIndex, d: number, seed: number): HeadIndex {
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

/** Index of a whole artifact. layers[l].k: [kv_head][n][head_dim] (the artifact's LayerKV.k). */
export function buildIndex(
  layers: readonly { k: Float32Array }[],
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
      heads.push(buildHeadIndex(keys, clustered, d, { ...opts, seed: (opts.seed ?? 1) + l * 1009 + g }));
    }
  });
  return { n, window, layers: layers.length, kvHeads, headDim: d, heads };
}

/**
 * The precompute hook: builds the index of an artifact's layers and serialises it, ready for
 * encodeArtifact(meta, layers, buildIndexSection(layers, meta)).
 */
export function buildIndexSection(
  layers: readonly { k: Float32Array }[],
  meta: { tokenIds: readonly number[]; kvHeads: number; headDim: number },
  opts: IndexOptions = {},
): Uint8Array {
  return encodeIndex(
    buildIndex(layers, { n: meta.tokenIds.length, kvHeads: meta.kvHeads, headDim: meta.headDim }, opts),
  );
}
