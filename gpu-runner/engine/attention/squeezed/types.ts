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
  /**
   * Summaries (index format v2; null in v1 artifacts): radius [k][headDim/2] = per RoPE pair (channels i,
   * i + headDim/2) the max over members of ‖(k − c) restricted to the pair‖, so q·k ≤ q·c + Σ_i ‖q_i‖·r_i
   * for every member — an upper bound RoPE leaves unchanged (it rotates each pair); values [k][headDim]
   * = the members' mean value (null when built without values); win = the same for the window's keys
   * [clustered, n), null when the window is empty (its value null without values).
   */
  radius: Float32Array | null;
  values: Float32Array | null;
  win: WindowSummary | null;
}

/** The window keys of one head as one cluster: centroid [headDim], pair radii [headDim/2], mean value [headDim] or null. */
export interface WindowSummary {
  centroid: Float32Array;
  radius: Float32Array;
  value: Float32Array | null;
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

/** One head's clusters alone (CSR over the clustered positions, members ascending): what format v3 stores. */
export type HeadClusters = Pick<HeadIndex, 'k' | 'starts' | 'order'>;

/**
 * An index as format v3 stores it: the clusters of every head without their statistics (centroids, radii,
 * value means), which are the artifact's own K/V summarised and are derived from them when the index is
 * first needed (completeIndex in index.ts).
 */
export interface ClusterIndex extends Omit<SqueezedIndex, 'heads'> {
  /** heads[layer·kvHeads + g] */
  heads: HeadClusters[];
}

/** What an index section holds: a complete index (format v1/v2) or its clusters only (v3). */
export type StoredIndex =
  | { kind: 'complete'; index: SqueezedIndex }
  | { kind: 'clusters'; index: ClusterIndex };

/** Clustered positions of a head's index (n − window, at least 0). */
export const clusteredCount = (ix: Pick<SqueezedIndex, 'n' | 'window'>) => Math.max(0, ix.n - ix.window);

export const clusterSize = (h: HeadIndex, c: number) => h.starts[c + 1] - h.starts[c];
