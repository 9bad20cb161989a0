// The oracle bound for sparse prefill on a model (`kvrag bench prefill`): from the exact dense
// attention probabilities, the fewest keys any selection could keep and still hold a target share of
// the attention mass. No pattern can beat it, so it says whether a speedup target is reachable on a
// model at all, independently of how good the patterns' estimates are.
//
// Two granularities, both per kv head:
// - per row: each (row, query head) keeps its own top keys until it holds `target` of its mass;
// - per plan block (what the sparse kernel can express: one key set per kv head and block of
//   `blockSize` query rows, shared by the group's query heads): keys ranked by their mass pooled over
//   the block's rows and heads, ranked globally over all sampled blocks, kept until the pooled mass
//   reaches `target` of the total. Ranking globally is optimal for the mean recall over rows and heads
//   (the measure the bench reports), so this is the exact minimum density at that recall for a
//   block-granular plan, up to row sampling.
// Sampling: every `sampleEvery`-th query block, from the block that holds row `minRow` on.

export interface OracleInput {
  /** rotated queries of the span's rows: [rows][heads][headDim] */
  q: Float32Array;
  /** rotated keys of positions 0..pos+rows−1: [kvHead][positions][headDim] */
  k: Float32Array;
  rows: number;
  /** absolute position of row 0 (keys 0..pos+r are visible to row r) */
  pos: number;
  positions: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

export interface OracleOptions {
  target?: number;
  blockSize?: number;
  sampleEvery?: number;
  minRow?: number;
}

export interface OracleResult {
  target: number;
  /** per kv head: kept keys ÷ visible keys, per-row selection (mean over sampled rows and heads) */
  rowDensity: number[];
  /** per kv head: kept ÷ visible (row, key) pairs for the best block-granular plan */
  blockDensity: number[];
  sampledBlocks: number;
}

/** Keys to keep, largest first, until their sum reaches `need`. */
function keepCount(sorted: Float32Array, need: number): number {
  let s = 0;
  for (let i = 0; i < sorted.length; i++) {
    s += sorted[i];
    if (s >= need) return i + 1;
  }
  return sorted.length;
}

export function oracleDensity(inp: OracleInput, opts: OracleOptions = {}): OracleResult {
  const target = opts.target ?? 0.95;
  const bs = opts.blockSize ?? 16;
  const { q, k, rows, pos, heads, kvHeads, headDim: D, scale } = inp;
  if (q.length !== rows * heads * D) throw new Error('oracleDensity: q is not [rows][heads][headDim]');
  if (k.length !== kvHeads * inp.positions * D || inp.positions < pos + rows)
    throw new Error('oracleDensity: k is not [kvHeads][positions][headDim] covering the rows');
  const group = heads / kvHeads;
  const nBlocks = Math.ceil(rows / bs);
  const every = opts.sampleEvery ?? Math.max(1, Math.floor(nBlocks / 96));
  const first = Math.floor((opts.minRow ?? 0) / bs);
  const rowDensity = new Array<number>(kvHeads).fill(0);
  const blockDensity = new Array<number>(kvHeads).fill(0);
  let sampled = 0;
  for (let g = 0; g < kvHeads; g++) {
    const pooledAll: Float32Array[] = [];
    let visiblePairs = 0;
    let rowSum = 0;
    let rowN = 0;
    let totalMass = 0;
    for (let b = first; b < nBlocks; b += every) {
      const r0 = b * bs;
      const r1 = Math.min(rows, r0 + bs);
      const nk = pos + r1; // keys visible to the block's last row
      const pooled = new Float32Array(nk);
      const p = new Float32Array(nk);
      for (let r = r0; r < r1; r++) {
        const vis = pos + r + 1;
        for (let hq = 0; hq < group; hq++) {
          const h = g * group + hq;
          const qo = (r * heads + h) * D;
          let max = Number.NEGATIVE_INFINITY;
          for (let j = 0; j < vis; j++) {
            const ko = (g * inp.positions + j) * D;
            let s = 0;
            for (let d = 0; d < D; d++) s += q[qo + d] * k[ko + d];
            s *= scale;
            p[j] = s;
            if (s > max) max = s;
          }
          let z = 0;
          for (let j = 0; j < vis; j++) {
            p[j] = Math.exp(p[j] - max);
            z += p[j];
          }
          for (let j = 0; j < vis; j++) {
            p[j] /= z;
            pooled[j] += p[j];
          }
          const row = p.slice(0, vis).sort().reverse();
          rowSum += keepCount(row, target) / vis;
          rowN++;
          totalMass += 1;
          visiblePairs += vis;
        }
      }
      pooledAll.push(pooled);
      if (g === 0) sampled++;
    }
    // global ranking of (block, key) pooled masses; kept pairs count every row of the block the
    // key is visible to (a kept key costs one dot product per row and query head)
    let n = 0;
    for (const a of pooledAll) n += a.length;
    const all = new Float32Array(n);
    const cost = new Float32Array(n);
    let o = 0;
    for (let i = 0; i < pooledAll.length; i++) {
      const b = first + i * every;
      const r0 = b * bs;
      const r1 = Math.min(rows, r0 + bs);
      const a = pooledAll[i];
      all.set(a, o);
      for (let j = 0; j < a.length; j++) cost[o + j] = (r1 - Math.max(r0, j - pos)) * group;
      o += a.length;
    }
    const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => all[y] - all[x]);
    let mass = 0;
    let pairs = 0;
    const need = target * totalMass;
    for (const i of order) {
      if (mass >= need) break;
      mass += all[i];
      pairs += cost[i];
    }
    rowDensity[g] = rowN > 0 ? rowSum / rowN : 0;
    blockDensity[g] = visiblePairs > 0 ? pairs / visiblePairs : 0;
  }
  return { target, rowDensity, blockDensity, sampledBlocks: sampled };
}
