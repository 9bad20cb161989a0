// Seeded k-means for the squeezed-attention index (DESIGN.md §4.2): k-means++ seeding on a bounded
// sample, then a bounded number of Lloyd iterations over every point. The nearest-centroid step is
// pluggable so a kernel (the wasm one in bench/_wasm-kmeans.ts) can do the O(n·k·d) part.

/** labels[i] = argmin_c ‖x_i − c‖². points: [n][d], centroids: [k][d]. */
export type Assigner = (
  points: Float32Array,
  n: number,
  d: number,
  centroids: Float32Array,
  k: number,
) => Int32Array;

export interface KMeansOptions {
  seed: number;
  /** Lloyd iterations at most (stops early when no label changes). */
  iters: number;
  /** k-means++ seeds from at most this many points (sampled); bounds the O(sample·k·d) seeding. */
  seedSample: number;
  assign?: Assigner;
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Straightforward TS nearest-centroid assignment (the reference for the wasm kernel). */
export const assignHost: Assigner = (x, n, d, c, k) => {
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bestD = Number.POSITIVE_INFINITY;
    const xo = i * d;
    for (let j = 0; j < k; j++) {
      const co = j * d;
      let s = 0;
      for (let e = 0; e < d; e++) {
        const t = x[xo + e] - c[co + e];
        s += t * t;
      }
      if (s < bestD) {
        bestD = s;
        best = j;
      }
    }
    labels[i] = best;
  }
  return labels;
};

/** k-means++ centroids chosen among `pool` (indices into x). centroids: [k][d]. */
function seedPlusPlus(
  x: Float32Array,
  d: number,
  pool: Int32Array,
  k: number,
  rand: () => number,
): Float32Array {
  const s = pool.length;
  const cents = new Float32Array(k * d);
  const d2 = new Float64Array(s).fill(Number.POSITIVE_INFINITY);
  let pick = pool[Math.floor(rand() * s)];
  for (let c = 0; c < k; c++) {
    cents.set(x.subarray(pick * d, pick * d + d), c * d);
    if (c === k - 1) break;
    let total = 0;
    for (let i = 0; i < s; i++) {
      const xo = pool[i] * d;
      let t = 0;
      for (let e = 0; e < d; e++) {
        const u = x[xo + e] - cents[c * d + e];
        t += u * u;
      }
      if (t < d2[i]) d2[i] = t;
      total += d2[i];
    }
    // D² sampling; when every sampled point is already a centroid, fall back to uniform.
    let r = rand() * total;
    let at = total > 0 ? -1 : Math.floor(rand() * s);
    if (at < 0) {
      for (let i = 0; i < s; i++) {
        r -= d2[i];
        if (r <= 0) {
          at = i;
          break;
        }
      }
      if (at < 0) at = s - 1;
    }
    pick = pool[at];
  }
  return cents;
}

/** Clusters x ([n][d]) into k groups; returns labels [n]. Deterministic for a given seed. */
export function kmeans(x: Float32Array, n: number, d: number, k: number, opts: KMeansOptions): Int32Array {
  if (k < 1 || k > n) throw new Error(`kmeans: k = ${k} for ${n} points`);
  const rand = prng(opts.seed);
  const assign = opts.assign ?? assignHost;
  // pool: a uniform sample without replacement (partial Fisher–Yates) of at most seedSample points.
  const s = Math.min(n, Math.max(k, opts.seedSample));
  const all = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < s; i++) {
    const j = i + Math.floor(rand() * (n - i));
    const t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  const cents = seedPlusPlus(x, d, all.subarray(0, s), k, rand);
  let labels: Int32Array = new Int32Array(n).fill(-1);
  for (let it = 0; it < Math.max(1, opts.iters); it++) {
    const next = assign(x, n, d, cents, k);
    let changed = 0;
    for (let i = 0; i < n; i++) if (next[i] !== labels[i]) changed++;
    labels = next;
    if (changed === 0) break;
    // Means in the clustering space; an emptied cluster keeps its previous centroid.
    const sum = new Float64Array(k * d);
    const cnt = new Int32Array(k);
    for (let i = 0; i < n; i++) {
      const c = labels[i];
      cnt[c]++;
      for (let e = 0; e < d; e++) sum[c * d + e] += x[i * d + e];
    }
    for (let c = 0; c < k; c++) {
      if (cnt[c] === 0) continue;
      for (let e = 0; e < d; e++) cents[c * d + e] = sum[c * d + e] / cnt[c];
    }
  }
  return labels;
}
