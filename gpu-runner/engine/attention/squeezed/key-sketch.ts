// Per-key scoring of a fixed context (DESIGN.md §4.2; the cheap-score-every-key idea of SparQ and Loki,
// here with int8 keys): per (layer, kv head) an int8 copy of the fixed-context keys in cache order (one
// scale per key, max |k| / 127) scores every key for a step's queries — a quarter of the f32 keys' bytes
// and no values — and attention is exact over the best keys only. A cluster's mean hides the one key a
// copying head needs (the probe of issue 23: its cluster ranked 25th–55th of 88); a per-key score does not.
//
// What is not attended is not discarded: each slot belongs to a summary group (a cluster of its block's
// index, or the block's window), and the keys left out join the softmax with their own (int8) logits and
// their group's mean value — per query head Σ_j∈out exp(s_j)·v̄_group(j), merged with the exact part by
// log-sum-exp (clustered attention's value approximation with per-key weights). Near-uniform heads keep
// their output that way; a concentrated head's few heavy keys are attended exactly.
//
// Selection score of key j for a kv head: max over the step's rows and the group's query heads of the
// estimated softmax weight exp(s_hj − lse_h) (a key one head needs is kept for the group). Budget mode
// keeps the `take` best; threshold mode keeps those with m·weight ≥ τ (m: selectable keys, so τ is
// relative to the uniform weight). Slots of blocks without an index are always attended.
import type { PlacedBlock } from './centroid-table.ts';

export interface KeySketch {
  /** fixed-context slots [0, n) and head dim */
  n: number;
  d: number;
  /** [n][d] int8 keys in cache order and [n] their scales */
  q8: Int8Array;
  kScale: Float32Array;
  /** [n] summary group of each slot (a block's cluster or its window), −1 = always attended */
  group: Int32Array;
  groups: number;
  /** [groups][d] mean value of each group; null when an index has no value means (drop-only) */
  values: Float32Array | null;
  /** coalesced [start, end) slot ranges always attended (blocks without an index) */
  always: Int32Array;
  alwaysKeys: number;
}

/** Rows x [rows][d] → int8 [rows][d] with a scale per row (max |x| / 127). */
export function quantizeRows(
  x: Float32Array,
  rows: number,
  d: number,
): { q8: Int8Array; scale: Float32Array } {
  const q8 = new Int8Array(rows * d);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let e = 0; e < d; e++) m = Math.max(m, Math.abs(x[r * d + e]));
    const s = Math.fround(m / 127);
    scale[r] = s;
    if (s === 0) continue;
    for (let e = 0; e < d; e++) q8[r * d + e] = Math.round(x[r * d + e] / s);
  }
  return { q8, scale };
}

/**
 * The sketch of kv head g of layer l. keys: that head's fixed-context keys [n][d] in cache order (each
 * indexed block already cluster-major, so cluster c of a block at offset o fills [o + starts[c], o +
 * starts[c+1]) and its window the block's last W slots).
 */
export function buildKeySketch(
  keys: Float32Array,
  blocks: readonly PlacedBlock[],
  l: number,
  g: number,
  d: number,
): KeySketch {
  const n = keys.length / d;
  const group = new Int32Array(n).fill(-1);
  const vals: (Float32Array | null)[] = []; // each group's mean value (null: the index has none)
  const always: number[] = [];
  for (const bl of blocks) {
    if (!bl.index) {
      always.push(bl.offset, bl.offset + bl.n);
      continue;
    }
    const h = bl.index.heads[l * bl.index.kvHeads + g];
    for (let c = 0; c < h.k; c++) {
      group.fill(vals.length, bl.offset + h.starts[c], bl.offset + h.starts[c + 1]);
      vals.push(h.values ? h.values.subarray(c * d, (c + 1) * d) : null);
    }
    const w = bl.index.window;
    if (w > 0) {
      group.fill(vals.length, bl.offset + bl.n - w, bl.offset + bl.n);
      vals.push(h.win?.value ?? null);
    }
  }
  let values: Float32Array | null = new Float32Array(vals.length * d);
  for (const [i, v] of vals.entries()) {
    if (!v) {
      values = null;
      break;
    }
    values.set(v, i * d);
  }
  const { q8, scale } = quantizeRows(keys, n, d);
  const ranges = Int32Array.from(always);
  let alwaysKeys = 0;
  for (let t = 0; t < ranges.length; t += 2) alwaysKeys += ranges[t + 1] - ranges[t];
  return { n, d, q8, kScale: scale, group, groups: vals.length, values, always: ranges, alwaysKeys };
}

/** A sketch of plain keys [n][d] with no groups and nothing always attended (calibration). */
export function plainSketch(keys: Float32Array, d: number): KeySketch {
  const n = keys.length / d;
  const { q8, scale } = quantizeRows(keys, n, d);
  return {
    n,
    d,
    q8,
    kScale: scale,
    group: new Int32Array(n),
    groups: 1,
    values: null,
    always: new Int32Array(0),
    alwaysKeys: 0,
  };
}

/**
 * Estimated logits of every slot: [rows][n] = ((q8_r · k8_j)·f_r)·ks_j in f32 (f_r = qs_r·scale rounded to
 * f32: the native kernel's roundings), with [rows] max and log-sum-exp.
 */
export function scoreKeys(
  s: KeySketch,
  q: Float32Array,
  rows: number,
  scale: number,
): { logits: Float32Array; max: Float32Array; lse: Float32Array } {
  const { n, d, q8: k8, kScale } = s;
  const { q8, scale: qs } = quantizeRows(q, rows, d);
  const logits = new Float32Array(rows * n);
  const max = new Float32Array(rows).fill(Number.NEGATIVE_INFINITY);
  const lse = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const f = Math.fround(qs[r] * scale);
    const qo = r * d;
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      let acc = 0;
      const ko = j * d;
      for (let e = 0; e < d; e++) acc += q8[qo + e] * k8[ko + e];
      const v = Math.fround(Math.fround(acc * f) * kScale[j]);
      logits[r * n + j] = v;
      if (v > m) m = v;
    }
    let z = 0;
    for (let j = 0; j < n; j++) z += Math.exp(logits[r * n + j] - m);
    max[r] = m;
    lse[r] = m + Math.log(z);
  }
  return { logits, max, lse };
}

/** Per slot: the best estimated softmax weight over rows, max_r exp(s_rj − lse_r); −1 for slots always attended. */
export function keyWeights(
  s: KeySketch,
  logits: Float32Array,
  lse: Float32Array,
  rows: number,
): Float32Array {
  const w = new Float32Array(s.n);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < s.n; j++) {
      const v = Math.exp(logits[r * s.n + j] - lse[r]);
      if (v > w[j]) w[j] = v;
    }
  for (let j = 0; j < s.n; j++) if (s.group[j] < 0) w[j] = -1;
  return w;
}

/** Keep mask [n]: the `take` best slots by weight (ties by slot), or (take −1) those with m·w ≥ τ. */
export function pickKeys(s: KeySketch, w: Float32Array, rule: { take: number; tau: number }): Uint8Array {
  const keep = new Uint8Array(s.n);
  const selectable = s.n - s.alwaysKeys;
  if (rule.take < 0) {
    const cut = rule.tau / Math.max(1, selectable);
    for (let j = 0; j < s.n; j++) if (s.group[j] >= 0 && w[j] >= cut) keep[j] = 1;
    return keep;
  }
  const take = Math.min(rule.take, selectable);
  if (take <= 0) return keep;
  const t = kthLargest(w, take);
  let above = 0;
  for (let j = 0; j < s.n; j++) if (w[j] > t) above++;
  let ties = take - above;
  for (let j = 0; j < s.n; j++) {
    if (s.group[j] < 0) continue;
    if (w[j] > t) keep[j] = 1;
    else if (w[j] === t && ties > 0) {
      keep[j] = 1;
      ties--;
    }
  }
  return keep;
}

/** The k-th largest of x (1-based), by quickselect on a copy. */
export function kthLargest(x: Float32Array, k: number): number {
  const a = x.slice();
  let lo = 0;
  let hi = a.length - 1;
  const want = k - 1;
  while (lo < hi) {
    const p = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > p) i++;
      while (a[j] < p) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return a[want];
  }
  return a[want];
}

/**
 * The left-out keys' share per row: Σ_j∉keep exp(s_rj − max_r)·v̄_group(j) / Z_r and lse_r = max_r + log Z_r
 * (−∞ and zeros where nothing is left out). out: [rows][d], lse: [rows]. Needs s.values.
 */
export function leftOutShare(
  s: KeySketch,
  keep: Uint8Array,
  logits: Float32Array,
  max: Float32Array,
  rows: number,
): { out: Float32Array; lse: Float32Array } {
  const { n, d, groups } = s;
  const values = s.values!;
  const out = new Float32Array(rows * d);
  const lse = new Float32Array(rows).fill(Number.NEGATIVE_INFINITY);
  const wg = new Float64Array(groups);
  for (let r = 0; r < rows; r++) {
    wg.fill(0);
    let z = 0;
    for (let j = 0; j < n; j++) {
      if (keep[j] || s.group[j] < 0) continue;
      const e = Math.exp(logits[r * n + j] - max[r]);
      wg[s.group[j]] += e;
      z += e;
    }
    if (!(z > 0)) continue;
    for (let c = 0; c < groups; c++) {
      if (wg[c] === 0) continue;
      const f = wg[c] / z;
      for (let e = 0; e < d; e++) out[r * d + e] += f * values[c * d + e];
    }
    lse[r] = max[r] + Math.log(z);
  }
  return { out, lse };
}

/** Sorted [start, end) ranges: the kept slots' runs, the always-attended ranges, then [n, end). */
export function keptRanges(s: KeySketch, keep: Uint8Array, end: number): Int32Array {
  const out: number[] = [];
  const push = (a: number, b: number) => {
    if (out.length > 0 && out[out.length - 1] >= a) out[out.length - 1] = Math.max(out[out.length - 1], b);
    else out.push(a, b);
  };
  let al = 0;
  for (let j = 0; j < s.n; j++) {
    while (al < s.always.length && s.always[al] <= j) {
      push(s.always[al], s.always[al + 1]);
      al += 2;
    }
    if (!keep[j]) continue;
    let e = j + 1;
    while (e < s.n && keep[e]) e++;
    push(j, e);
    j = e - 1;
  }
  for (; al < s.always.length; al += 2) push(s.always[al], s.always[al + 1]);
  if (end > s.n) push(s.n, end);
  return Int32Array.from(out);
}
