// Shapes of the squeezed-attention index (DESIGN.md §4.2), shared by the builder, codec and selection.

/** One (layer, kv head)'s clusters over the clustered positions [0, clustered). */
export interface HeadIndex {
  /** k: number of clusters (0 when every key is in the window). */
  k: number;
  /** centroids: [k][headDim], mean of the cluster's raw (post-RoPE) keys. */
  centroids: Float32Array;
  /** members of cluster c are order[starts[c] .. starts[c+1]): the labels, grouped (CSR). starts: [k+1] */
  starts: Int32Array;
  /** order: [clustered] positions grouped by cluster. */
  order: Int32Array;
}

export interface SqueezedIndex {
  /** n: tokens in the artifact; window: the last `window` positions, always kept. */
  n: number;
  window: number;
  layers: number;
  kvHeads: number;
  headDim: number;
  /** heads[layer·kvHeads + g] */
  heads: HeadIndex[];
}

/** Clustered positions of a head's index (n − window, at least 0). */
export const clusteredCount = (ix: Pick<SqueezedIndex, 'n' | 'window'>) => Math.max(0, ix.n - ix.window);

export const clusterSize = (h: HeadIndex, c: number) => h.starts[c + 1] - h.starts[c];
