// Reciprocal Rank Fusion (Cormack et al. 2009): score(d) = Σ_lists w_l / (k + rank_l(d)), rank 1-based,
// k = 60 by default (LlamaIndex, the pgvector hybrid example). Used to fuse the vector and full-text
// rankings of hybrid search. Pure, deterministic: equal scores are ordered by the best rank the item
// reached, then by which list and position it was first seen in.

export interface RrfOptions<T> {
  /** Rank constant (> 0); larger k flattens the head of each list. Default 60. */
  k?: number;
  /** One non-negative weight per list (default 1 each); R2R uses 5:1 semantic:full-text. */
  weights?: number[];
  /** Identity of an item across lists (default: the item itself, for string or number ids). */
  key?: (item: T) => string | number;
  /** Keep only the best `limit` results. */
  limit?: number;
}

export interface FusedResult<T> {
  key: string | number;
  /** The item as first seen (list order, then position). */
  item: T;
  score: number;
  /** 1-based rank of the item in each input list, null where absent. */
  ranks: (number | null)[];
}

export function reciprocalRankFusion<T>(
  lists: readonly (readonly T[])[],
  opts: RrfOptions<T> = {},
): FusedResult<T>[] {
  const k = opts.k ?? 60;
  if (!(k > 0) || !Number.isFinite(k)) throw new RangeError(`RRF k must be a positive number, got ${k}`);
  const weights = opts.weights ?? lists.map(() => 1);
  if (weights.length !== lists.length) {
    throw new RangeError(`RRF got ${weights.length} weights for ${lists.length} lists`);
  }
  for (const w of weights)
    if (!(w >= 0) || !Number.isFinite(w)) throw new RangeError(`RRF weight must be ≥ 0, got ${w}`);
  const keyOf = opts.key ?? ((item: T) => item as unknown as string | number);

  const byKey = new Map<string | number, FusedResult<T> & { best: number; seen: number }>();
  let seen = 0;
  lists.forEach((list, l) => {
    list.forEach((item, pos) => {
      const key = keyOf(item);
      let r = byKey.get(key);
      if (!r) {
        r = { key, item, score: 0, ranks: lists.map(() => null), best: Infinity, seen: seen++ };
        byKey.set(key, r);
      }
      if (r.ranks[l] !== null) return; // a repeat within one list counts once, at its best rank
      const rank = pos + 1;
      r.ranks[l] = rank;
      r.score += weights[l] / (k + rank);
      if (rank < r.best) r.best = rank;
    });
  });

  const fused = [...byKey.values()].sort((a, b) => b.score - a.score || a.best - b.best || a.seen - b.seen);
  const top = opts.limit === undefined ? fused : fused.slice(0, Math.max(0, opts.limit));
  return top.map(({ key, item, score, ranks }) => ({ key, item, score, ranks }));
}
