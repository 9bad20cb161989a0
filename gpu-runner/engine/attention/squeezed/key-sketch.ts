// Block-bound scoring of a fixed context (DESIGN.md §4.2; Quest's per-page channel bounds, here on the
// 16-slot blocks of the cluster-major cache): per (layer, kv head), for every block of PICK_BLOCK slots in
// cache order, the per-channel range [lo, hi] of its selectable keys, kept as its centre and half-width
// (int8, a scale per block each). A step scores blocks, not keys: the upper bound of q·k over a block is
// q·centre + |q|·half-width (= Σ_e max(q_e·lo_e, q_e·hi_e)), so one matching key lifts its block's bound
// however many others sit beside it, and 32K keys cost 2048 bound rows (two int8 rows each) instead of
// 32768 key rows. The bound's margin enters the rank with weight BLOCK_BOUND (1 = the bound itself).
//
// What is not attended is not discarded: each slot belongs to a summary group (a cluster of its block's
// index, or the block's window — runs of slots), and per group the slots left out join the softmax as
// out_g · exp(q·mean key_g) with the group's mean value (clustered attention, the group means int8 like
// the bounds), merged with the exact part by log-sum-exp. Near-uniform heads keep their output that way;
// a concentrated head's few heavy blocks are attended exactly.
//
// Rank of block b for a kv head: max over the step's rows and the group's query heads of ub_hb − L_h,
// L_h = log Σ_g len_g·exp(q_h·mean_g) (the clustered log-sum-exp: a block wins if one head needs it).
// Budget mode keeps whole blocks in rank order while they fit, then the next block's best keys by their
// exact logits (pickKeys); threshold mode keeps the blocks with m·exp(rank) ≥ τ (m: selectable keys, so
// τ is relative to the uniform weight). Slots of blocks without an index are always attended. The bounds
// are built here, from the cluster-major keys at their final (re-rotated) positions — they are not in the
// artifact: the 16-slot blocks depend on where a chunk lands and RoPE's rotation by the block's offset
// changes every channel's range. Live (decoded) tokens need none: they are always attended exactly.
import type { PlacedBlock } from './centroid-table.ts';

/** Slots per block of a step's choice (the native kernel's block, src/squeezed.h SQ_BLOCK). */
export const PICK_BLOCK = 16;

/**
 * λ: the share of the bound's margin (|q|·half-width) in a block's rank, 1 = Quest's upper bound.
 * Measured (`kvrag bench squeezed`, 32K, 1/8) and on the eval: see README (issue 23).
 */
export const BLOCK_BOUND = 1;

export interface KeySketch {
  /** fixed-context slots [0, n) and head dim */
  n: number;
  d: number;
  /** [n][d] the f32 keys in cache order (not a copy: the partial block's keys are ranked exactly) */
  keys: Float32Array;
  /** [n] summary group of each slot (a block's cluster or its window), −1 = always attended */
  group: Int32Array;
  groups: number;
  /** [groups][d] mean value of each group; null when an index has no value means (drop-only) */
  values: Float32Array | null;
  /** coalesced [start, end) slot ranges always attended (blocks without an index) */
  always: Int32Array;
  alwaysKeys: number;
  /** [groups] each group's run of slots [gStart, gStart + gLen) (ascending, disjoint) */
  gStart: Int32Array;
  gLen: Int32Array;
  /** [groups][d] int8 mean key of each group, a scale per group (quantizeRows) */
  gMean8: Int8Array;
  gMeanScale: Float32Array;
  /** ⌈n / 16⌉ blocks: [blocks][d] int8 centre and half-width (× BLOCK_BOUND in the scale) of the
   * selectable keys' channel ranges; [blocks] selectable slots of each (0: not a candidate) */
  blocks: number;
  bMid8: Int8Array;
  bMidScale: Float32Array;
  bHalf8: Int8Array;
  bHalfScale: Float32Array;
  bCount: Int32Array;
  /** [blocks] the first group overlapping each block (groups: none) */
  bFirst: Int32Array;
}

/** keys [n][d] → per group (runs of slots) its mean key in int8. */
function groupMeans(keys: Float32Array, d: number, gStart: Int32Array, gLen: Int32Array) {
  const G = gStart.length;
  const mean = new Float32Array(G * d);
  for (let g = 0; g < G; g++) {
    const a = gStart[g];
    const b = a + gLen[g];
    if (b === a) continue;
    for (let j = a; j < b; j++) for (let e = 0; e < d; e++) mean[g * d + e] += keys[j * d + e];
    for (let e = 0; e < d; e++) mean[g * d + e] /= b - a;
  }
  const m = quantizeRows(mean, G, d);
  return { gMean8: m.q8, gMeanScale: m.scale };
}

/** keys [n][d] and slot groups → per 16-slot block the centre / half-width of its selectable keys. */
function blockBounds(keys: Float32Array, d: number, n: number, group: Int32Array, groups: number) {
  const blocks = Math.ceil(n / PICK_BLOCK);
  const mid = new Float32Array(blocks * d);
  const half = new Float32Array(blocks * d);
  const bCount = new Int32Array(blocks);
  const lo = new Float32Array(d);
  const hi = new Float32Array(d);
  for (let b = 0; b < blocks; b++) {
    lo.fill(Number.POSITIVE_INFINITY);
    hi.fill(Number.NEGATIVE_INFINITY);
    for (let j = b * PICK_BLOCK; j < Math.min(n, (b + 1) * PICK_BLOCK); j++) {
      if (group[j] < 0) continue;
      bCount[b]++;
      for (let e = 0; e < d; e++) {
        const x = keys[j * d + e];
        if (x < lo[e]) lo[e] = x;
        if (x > hi[e]) hi[e] = x;
      }
    }
    if (bCount[b] === 0) continue;
    for (let e = 0; e < d; e++) {
      mid[b * d + e] = (lo[e] + hi[e]) / 2;
      half[b * d + e] = (hi[e] - lo[e]) / 2;
    }
  }
  const m = quantizeRows(mid, blocks, d);
  const h = quantizeRows(half, blocks, d, true);
  for (let b = 0; b < blocks; b++) h.scale[b] = Math.fround(h.scale[b] * BLOCK_BOUND);
  // groups are ascending runs: a block's first group is the smallest label among its slots
  const bFirst = new Int32Array(blocks).fill(groups);
  for (let j = 0; j < n; j++) if (group[j] >= 0 && group[j] < bFirst[j >> 4]) bFirst[j >> 4] = group[j];
  return { blocks, bMid8: m.q8, bMidScale: m.scale, bHalf8: h.q8, bHalfScale: h.scale, bCount, bFirst };
}

/** Rows x [rows][d] → int8 [rows][d] with a scale per row (max |x| / 127); up: rounded up (≥ 0 rows). */
export function quantizeRows(
  x: Float32Array,
  rows: number,
  d: number,
  up = false,
): { q8: Int8Array; scale: Float32Array } {
  const q8 = new Int8Array(rows * d);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let e = 0; e < d; e++) m = Math.max(m, Math.abs(x[r * d + e]));
    const s = Math.fround(m / 127);
    scale[r] = s;
    if (s === 0) continue;
    for (let e = 0; e < d; e++) {
      const v = x[r * d + e] / s;
      q8[r * d + e] = up ? Math.min(127, Math.ceil(v)) : Math.round(v);
    }
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
  const runs: number[] = []; // each group's [start, len)
  const always: number[] = [];
  for (const bl of blocks) {
    if (!bl.index) {
      always.push(bl.offset, bl.offset + bl.n);
      continue;
    }
    const h = bl.index.heads[l * bl.index.kvHeads + g];
    for (let c = 0; c < h.k; c++) {
      group.fill(vals.length, bl.offset + h.starts[c], bl.offset + h.starts[c + 1]);
      runs.push(bl.offset + h.starts[c], h.starts[c + 1] - h.starts[c]);
      vals.push(h.values ? h.values.subarray(c * d, (c + 1) * d) : null);
    }
    const w = bl.index.window;
    if (w > 0) {
      group.fill(vals.length, bl.offset + bl.n - w, bl.offset + bl.n);
      runs.push(bl.offset + bl.n - w, w);
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
  const ranges = Int32Array.from(always);
  let alwaysKeys = 0;
  for (let t = 0; t < ranges.length; t += 2) alwaysKeys += ranges[t + 1] - ranges[t];
  const gStart = Int32Array.from({ length: vals.length }, (_, i) => runs[2 * i]);
  const gLen = Int32Array.from({ length: vals.length }, (_, i) => runs[2 * i + 1]);
  return {
    n,
    d,
    keys,
    group,
    groups: vals.length,
    values,
    always: ranges,
    alwaysKeys,
    gStart,
    gLen,
    ...groupMeans(keys, d, gStart, gLen),
    ...blockBounds(keys, d, n, group, vals.length),
  };
}

/** A sketch of plain keys [n][d]: one group, nothing always attended (calibration). */
export function plainSketch(keys: Float32Array, d: number): KeySketch {
  const n = keys.length / d;
  const gStart = Int32Array.of(0);
  const gLen = Int32Array.of(n);
  const group = new Int32Array(n);
  return {
    n,
    d,
    keys,
    group,
    groups: 1,
    values: null,
    always: new Int32Array(0),
    alwaysKeys: 0,
    gStart,
    gLen,
    ...groupMeans(keys, d, gStart, gLen),
    ...blockBounds(keys, d, n, group, 1),
  };
}

/** A step's scores: per group its estimated logit, per row the clustered log-sum-exp, per block its rank. */
export interface StepScores {
  /** [rows][groups] est_rg = ((q8_r·mean8_g)·f_r)·scale_g in f32 (f_r = qs_r·scale: the kernel's roundings) */
  est: Float32Array;
  /** [rows] max_g est_rg and L_r = max + log Σ_g len_g·exp(est_rg − max) */
  gmax: Float32Array;
  lse: Float32Array;
  /** [blocks] max_r (ub_rb − L_r); −∞ for a block without selectable slots */
  rank: Float32Array;
}

/** int8 row dot products a[ra]·b[rb] over d (|a| when abs). */
function dot8(a: Int8Array, ra: number, b: Int8Array, rb: number, d: number, abs: boolean): number {
  let acc = 0;
  for (let e = 0; e < d; e++) acc += (abs ? Math.abs(a[ra + e]) : a[ra + e]) * b[rb + e];
  return acc;
}

/** Scores of a step's queries q [rows][d] (f32; one kv head's query group for one or more positions). */
export function scoreStep(s: KeySketch, q: Float32Array, rows: number, scale: number): StepScores {
  const { d, groups: G, blocks: B } = s;
  const { q8, scale: qs } = quantizeRows(q, rows, d);
  const est = new Float32Array(rows * G);
  const gmax = new Float32Array(rows);
  const lse = new Float32Array(rows);
  const rank = new Float32Array(B).fill(Number.NEGATIVE_INFINITY);
  for (let r = 0; r < rows; r++) {
    const f = Math.fround(qs[r] * scale);
    let m = Number.NEGATIVE_INFINITY;
    for (let g = 0; g < G; g++) {
      const v = Math.fround(Math.fround(dot8(q8, r * d, s.gMean8, g * d, d, false) * f) * s.gMeanScale[g]);
      est[r * G + g] = v;
      if (v > m) m = v;
    }
    if (m === Number.NEGATIVE_INFINITY) m = 0;
    let z = 0;
    for (let g = 0; g < G; g++) z += s.gLen[g] * Math.exp(est[r * G + g] - m);
    gmax[r] = m;
    lse[r] = z > 0 ? Math.fround(m + Math.log(z)) : m;
    for (let b = 0; b < B; b++) {
      if (s.bCount[b] === 0) continue;
      const c = Math.fround(Math.fround(dot8(q8, r * d, s.bMid8, b * d, d, false) * f) * s.bMidScale[b]);
      const u = Math.fround(Math.fround(dot8(q8, r * d, s.bHalf8, b * d, d, true) * f) * s.bHalfScale[b]);
      const x = Math.fround(Math.fround(c + u) - lse[r]);
      if (x > rank[b]) rank[b] = x;
    }
  }
  return { est, gmax, lse, rank };
}

/** The selectable slots of block b, in slot order. */
function lanes(s: KeySketch, b: number): number[] {
  const out: number[] = [];
  for (let j = b * PICK_BLOCK; j < Math.min(s.n, (b + 1) * PICK_BLOCK); j++) if (s.group[j] >= 0) out.push(j);
  return out;
}

/**
 * Keep mask [n]. Budget (take ≥ 0): blocks ranked (ties by block) and taken in that order in rounds of
 * ⌊(take − kept)/16⌋ more blocks, each with all its selectable slots; then the next block's slots by
 * their exact logits (max over rows of q_r·k·scale − L_r, ties by slot) up to take — a block's one
 * matching key keeps its block, and kept rows are runs of contiguous rows. Threshold (take −1): the blocks
 * with m·exp(rank) ≥ τ (m: selectable slots). q: the step's queries [rows][d] (the partial block).
 */
export function pickKeys(
  s: KeySketch,
  sc: StepScores,
  q: Float32Array,
  rows: number,
  scale: number,
  rule: { take: number; tau: number },
): Uint8Array {
  const keep = new Uint8Array(s.n);
  const { rank } = sc;
  if (rule.take < 0) {
    const cut = rule.tau / Math.max(1, s.n - s.alwaysKeys);
    for (let b = 0; b < s.blocks; b++)
      if (s.bCount[b] > 0 && Math.exp(rank[b]) >= cut) for (const j of lanes(s, b)) keep[j] = 1;
    return keep;
  }
  if (rule.take <= 0) return keep;
  const order = Array.from({ length: s.blocks }, (_, i) => i)
    .filter((i) => s.bCount[i] > 0)
    .sort((x, y) => rank[y] - rank[x] || x - y);
  let kept = 0;
  let at = 0;
  for (let full = Math.floor(rule.take / PICK_BLOCK); full > 0 && at < order.length; ) {
    for (const i of order.slice(at, at + full))
      for (const j of lanes(s, i)) {
        keep[j] = 1;
        kept++;
      }
    at = Math.min(order.length, at + full);
    full = Math.floor((rule.take - kept) / PICK_BLOCK);
  }
  if (at < order.length && kept < rule.take) {
    const { d } = s;
    const score = (j: number) => {
      let best = Number.NEGATIVE_INFINITY;
      for (let r = 0; r < rows; r++) {
        let acc = 0;
        for (let e = 0; e < d; e++) acc += q[r * d + e] * s.keys[j * d + e];
        best = Math.max(best, Math.fround(Math.fround(Math.fround(acc) * scale) - sc.lse[r]));
      }
      return best;
    };
    const ls = lanes(s, order[at]).map((j) => ({ j, v: score(j) }));
    ls.sort((x, y) => y.v - x.v || x.j - y.j);
    for (const { j } of ls.slice(0, rule.take - kept)) keep[j] = 1;
  }
  return keep;
}

/**
 * The left-out keys' share per row: per group, its slots not kept as out_g·exp(est_rg − gmax_r) with its
 * mean value, normalised, and lse_r = gmax_r + log Z_r (−∞ and zeros where nothing is left out). out:
 * [rows][d], lse: [rows]. Needs s.values.
 */
export function leftOutShare(
  s: KeySketch,
  keep: Uint8Array,
  sc: StepScores,
  rows: number,
): { out: Float32Array; lse: Float32Array } {
  const { d, groups } = s;
  const values = s.values!;
  const out = new Float32Array(rows * d);
  const lse = new Float32Array(rows).fill(Number.NEGATIVE_INFINITY);
  const left = new Int32Array(groups);
  for (let g = 0; g < groups; g++) {
    left[g] = s.gLen[g];
    for (let j = s.gStart[g]; j < s.gStart[g] + s.gLen[g]; j++) left[g] -= keep[j];
  }
  const wg = new Float64Array(groups);
  for (let r = 0; r < rows; r++) {
    let z = 0;
    for (let g = 0; g < groups; g++) {
      wg[g] = left[g] > 0 ? left[g] * Math.exp(sc.est[r * groups + g] - sc.gmax[r]) : 0;
      z += wg[g];
    }
    if (!(z > 0)) continue;
    for (let g = 0; g < groups; g++) {
      if (wg[g] === 0) continue;
      const f = wg[g] / z;
      for (let e = 0; e < d; e++) out[r * d + e] += f * values[g * d + e];
    }
    lse[r] = sc.gmax[r] + Math.log(z);
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
