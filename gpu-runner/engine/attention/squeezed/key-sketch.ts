// Per-key scoring of a fixed context (DESIGN.md §4.2; the cheap-score-every-key idea of SparQ and Loki,
// here with int8 keys): per (layer, kv head) an int8 copy of the fixed-context keys in cache order (one
// scale per key, max |k| / 127) scores every key for a step's queries — a quarter of the f32 keys' bytes
// and no values — and attention is exact over the best keys only. A cluster's mean hides the one key a
// copying head needs (the probe of issue 23: its cluster ranked 25th–55th of 88); a per-key score does not.
//
// What is not attended is not discarded: each slot belongs to a summary group (a cluster of its block's
// index, or the block's window), and the keys left out join the softmax by clustered attention — each
// group's slots not kept, c_g, as c_g·exp(q·mean key_g) with the group's mean value, merged with the exact
// part by log-sum-exp (leftOutShare). Near-uniform heads keep their output that way; a concentrated head's
// few heavy keys are attended exactly.
//
// Selection score of key j for a kv head: max over the step's rows and the group's query heads of the
// estimated log softmax weight s_hj − lse_h (a key one head needs is kept for the group), lse_h estimated
// from each 16-slot block's best logit, so a step takes exponentials per block, not per key. Budget mode
// keeps `take` keys by 16-slot blocks of the cluster-major cache, each ranked by its best key (pickKeys:
// one matching key keeps its block, and the kept rows are contiguous runs, not scattered rows — issue 23,
// session 6: the scattered gather cost most of the step); threshold mode keeps those with m·weight ≥ τ
// (m: selectable keys, so τ is relative to the uniform weight). Slots of blocks without an index are
// always attended.
//
// Channel subset (SparQ's cheap score): a step scores each key over the r channels that matter most for
// its query instead of all d — r/d of the int8 copy's bytes. The copy's channels are laid out by their mean
// |k8| (descending: perm), in quads of 4 (the VNNI instruction's unit), and a step takes the `quads` quads
// of largest Σ over its rows and the quad's channels of |q8_c|·E|k8_c| (|q| alone, SparQ's rule, ignores
// that a large q_c over a near-zero key channel moves no logit). The partial logit ranks the keys as the
// whole one does; the left-out share scores the groups' mean keys over every channel.
//
// Prefilter (budget mode, a share > 0): scoring every key reads the whole int8 copy each step. Instead the
// groups — runs of slots, since the fixed context sits cluster-major — are ranked first by an upper bound
// of their members' logits (q·mean + |q|·spread, spread = max |k − mean| per dim, Quest-style), mixed
// with the mean as the cluster scoring does (q·mean + λ·|q|·spread, λ = BOUND_WEIGHT); both tables int8
// and scored like the keys, so the pass reads 2·d bytes per group. The
// best groups until a share of the keys (DEFAULT_PREFILTER, at least the budget's) are scored per key; the others join the left-out share as
// len·exp(q·mean) with their mean value (clustered attention). Group ranks are normalised per query head
// by the clustered log-sum-exp L_h = log Σ_g len_g·exp(q_h·mean_g), so a group wins if one head needs it.
import { f16ToF32, f32ToF16 } from '../../half.ts';
import type { PlacedBlock } from './centroid-table.ts';
import { BOUND_WEIGHT } from './select.ts';

/**
 * Share of the selectable keys scored per key (prefilter), from the best-bounded groups — at least the
 * budget's keys; 0 (the default) scores every key. Measured (`kvrag bench squeezed --prefilter 0.375`,
 * 32K, 1/8): no faster than scoring every key — the scattered reads of the candidate blocks and the group
 * pass cost what the skipped int8 keys saved, and the kept rows' gather dominates either way — with
 * recall 0.914 against 0.922. A share, not a multiple of the budget: 3× budget 1/16 lost kvrag-tiny's
 * answers (67–72% against 98–100%), 3/8 at 1/8 and 1/16 kept them (README, issue 23).
 */
export const DEFAULT_PREFILTER = 0;

/** Keys the prefilter scores per key for a step keeping `take` (−1: no prefilter, every key scored). */
export function candidateKeys(s: KeySketch, take: number, share: number): number {
  const selectable = s.n - s.alwaysKeys;
  if (!(take >= 0 && share > 0)) return -1;
  const want = Math.max(take, Math.floor(share * selectable));
  return want < selectable ? want : -1;
}

/**
 * Channels a step scores per key by default (SparQ's r, in quads of 4; d = every channel): half of
 * kvrag-tiny's 64. The eval (passkey, kv, twohop at 2K/4K, 20 episodes) keeps every answer of `full` at
 * 1/8 and 1/16 with 32; with 16 it loses one twohop episode at 1/8 and two at 1/16 (README, issue 23).
 */
export const DEFAULT_SCORE_CHANNELS = 32;

/** Quads of channels a step scores for `channels` requested (every quad when channels ≥ d). */
export function scoreQuads(d: number, channels: number): number {
  if (!(Number.isInteger(channels) && channels >= 4 && channels % 4 === 0))
    throw new Error(`squeezed attention: score channels must be a multiple of 4, ≥ 4 (got ${channels})`);
  return Math.min(d, channels) / 4;
}

export interface KeySketch {
  /** fixed-context slots [0, n) and head dim */
  n: number;
  d: number;
  /** [n][d] int8 keys in cache order and [n] their scales */
  q8: Int8Array;
  kScale: Float32Array;
  /** [d] the layout's channel order: position p holds channel perm[p] (mean |k8| descending, ties by channel) */
  perm: Int32Array;
  /** [d] mean |k8| of the channel at each position (f32): a quad's weight in pickQuads */
  chanWeight: Float32Array;
  /** [n] summary group of each slot (a block's cluster or its window), −1 = always attended */
  group: Int32Array;
  groups: number;
  /**
   * [groups][d] mean value of each group, rounded to IEEE half (the fused step reads them as halves: half
   * the bytes of the left-out share's one pass over every group); null when an index has no value means
   * (drop-only)
   */
  values: Float32Array | null;
  /** coalesced [start, end) slot ranges always attended (blocks without an index) */
  always: Int32Array;
  alwaysKeys: number;
  /** [groups] each group's run of slots [gStart, gStart + gLen) (ascending, disjoint) */
  gStart: Int32Array;
  gLen: Int32Array;
  /** [groups][d] int8 mean key and max |k − mean| per dim, a scale per group each (quantizeRows) */
  gMean8: Int8Array;
  gMeanScale: Float32Array;
  gSpread8: Int8Array;
  gSpreadScale: Float32Array;
}

/** keys [n][d] → per group (runs of slots) its mean key and spread max |k − mean| per dim, in int8. */
function groupStats(keys: Float32Array, d: number, gStart: Int32Array, gLen: Int32Array) {
  const G = gStart.length;
  const mean = new Float32Array(G * d);
  const spread = new Float32Array(G * d);
  for (let g = 0; g < G; g++) {
    const a = gStart[g];
    const b = a + gLen[g];
    if (b === a) continue;
    for (let j = a; j < b; j++) for (let e = 0; e < d; e++) mean[g * d + e] += keys[j * d + e];
    for (let e = 0; e < d; e++) mean[g * d + e] /= b - a;
    for (let j = a; j < b; j++)
      for (let e = 0; e < d; e++) {
        const x = Math.abs(keys[j * d + e] - mean[g * d + e]);
        if (x > spread[g * d + e]) spread[g * d + e] = x;
      }
  }
  const m = quantizeRows(mean, G, d);
  const sp = quantizeRows(spread, G, d);
  // the rank adds BOUND_WEIGHT of the bound's margin (the whole bound ranks kvrag-tiny's groups by their
  // spread, as it did clusters by their radius): folded into the spread table's scales
  for (let g = 0; g < G; g++) sp.scale[g] = Math.fround(sp.scale[g] * BOUND_WEIGHT);
  return { gMean8: m.q8, gMeanScale: m.scale, gSpread8: sp.q8, gSpreadScale: sp.scale };
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

/** int8 keys [n][d] → the layout's channel order (mean |k8| descending, ties by channel) and those means. */
function channelOrder(q8: Int8Array, n: number, d: number): { perm: Int32Array; chanWeight: Float32Array } {
  const sum = new Float64Array(d);
  for (let j = 0; j < n; j++) for (let e = 0; e < d; e++) sum[e] += Math.abs(q8[j * d + e]);
  const mean = Float32Array.from(sum, (x) => x / Math.max(1, n));
  const perm = Int32Array.from({ length: d }, (_, e) => e).sort((x, y) => mean[y] - mean[x] || x - y);
  return { perm, chanWeight: Float32Array.from(perm, (e) => mean[e]) };
}

/**
 * The quads (of the layout's positions) a step scores: the `quads` of largest Σ_r Σ_{p∈quad} |q8_rp|·w_p
 * (q8 [rows][d] the rows' int8 queries in channel order, w = chanWeight; ties by quad), ascending.
 * src/squeezed.cc pickQuads: the same sums in the same order (doubles).
 */
export function pickQuads(s: KeySketch, q8: Int8Array, rows: number, quads: number): Int32Array {
  const T = s.d / 4;
  if (quads >= T) return Int32Array.from({ length: T }, (_, t) => t);
  const score = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let acc = 0;
    for (let r = 0; r < rows; r++)
      for (let i = 0; i < 4; i++) acc += Math.abs(q8[r * s.d + s.perm[4 * t + i]]) * s.chanWeight[4 * t + i];
    score[t] = acc;
  }
  const order = Array.from({ length: T }, (_, t) => t).sort((x, y) => score[y] - score[x] || x - y);
  return Int32Array.from(order.slice(0, quads)).sort();
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
  if (values) values = f16ToF32(f32ToF16(values));
  const { q8, scale } = quantizeRows(keys, n, d);
  const ranges = Int32Array.from(always);
  let alwaysKeys = 0;
  for (let t = 0; t < ranges.length; t += 2) alwaysKeys += ranges[t + 1] - ranges[t];
  const gStart = Int32Array.from({ length: vals.length }, (_, i) => runs[2 * i]);
  const gLen = Int32Array.from({ length: vals.length }, (_, i) => runs[2 * i + 1]);
  return {
    n,
    d,
    q8,
    kScale: scale,
    ...channelOrder(q8, n, d),
    group,
    groups: vals.length,
    values,
    always: ranges,
    alwaysKeys,
    gStart,
    gLen,
    ...groupStats(keys, d, gStart, gLen),
  };
}

/** A sketch of plain keys [n][d] with no groups and nothing always attended (calibration). */
export function plainSketch(keys: Float32Array, d: number): KeySketch {
  const n = keys.length / d;
  const { q8, scale } = quantizeRows(keys, n, d);
  const gStart = Int32Array.of(0);
  const gLen = Int32Array.of(n);
  return {
    n,
    d,
    q8,
    kScale: scale,
    ...channelOrder(q8, n, d),
    group: new Int32Array(n),
    groups: 1,
    values: null,
    always: new Int32Array(0),
    alwaysKeys: 0,
    gStart,
    gLen,
    ...groupStats(keys, d, gStart, gLen),
  };
}

/** A step's prefilter: the groups scored per key and the other groups' clustered mass. */
export interface Prefilter {
  /** [groups] 1 = scored per key */
  cand: Uint8Array;
  /** [rows][groups] exp(est_rg − gm_r), est_rg = scale·q_r·mean_g */
  em: Float32Array;
  /** [rows] max_g est_rg */
  gm: Float32Array;
}

/**
 * The prefilter of a budget step (null when every key is scored: threshold mode, share 0, or the share
 * covers the selectable keys). q: [rows][d] f32. Groups are ranked by max_r (ub_rg − L_r), ties by
 * index, and the best ⌈want·groups / selectable⌉ of them scored per key (want = candidateKeys: that many
 * keys at the mean group size; src/squeezed.cc's groupPass: the same int8 roundings; L_r up to the order
 * of its sums).
 */
export function prefilter(
  s: KeySketch,
  q: Float32Array,
  rows: number,
  scale: number,
  take: number,
  share: number,
): Prefilter | null {
  const want = candidateKeys(s, take, share);
  if (want < 0) return null;
  const { groups: G, d, gLen } = s;
  const { q8, scale: qs } = quantizeRows(q, rows, d);
  const em = new Float32Array(rows * G);
  const gm = new Float32Array(rows);
  const score = new Float64Array(G).fill(Number.NEGATIVE_INFINITY);
  const ub = new Float64Array(G);
  for (let r = 0; r < rows; r++) {
    const f = Math.fround(qs[r] * scale);
    let m = Number.NEGATIVE_INFINITY;
    for (let g = 0; g < G; g++) {
      let dm = 0;
      let ds = 0;
      for (let e = 0; e < d; e++) {
        const x = q8[r * d + e];
        dm += x * s.gMean8[g * d + e];
        ds += Math.abs(x) * s.gSpread8[g * d + e];
      }
      const est = Math.fround(Math.fround(dm * f) * s.gMeanScale[g]);
      em[r * G + g] = est;
      ub[g] = Math.fround(Math.fround(Math.fround(ds * f) * s.gSpreadScale[g]) + est);
      if (est > m) m = est;
    }
    gm[r] = m;
    let z = 0;
    for (let g = 0; g < G; g++) {
      em[r * G + g] = Math.exp(em[r * G + g] - m);
      z += gLen[g] * em[r * G + g];
    }
    const L = Math.fround(m + Math.log(z));
    for (let g = 0; g < G; g++) score[g] = Math.max(score[g], Math.fround(ub[g] - L));
  }
  // the best ⌈want·groups / selectable⌉ groups: want keys at the mean group size
  const top = Math.min(G, Math.ceil((want * G) / (s.n - s.alwaysKeys)));
  const order = Array.from({ length: G }, (_, g) => g).sort((x, y) => score[y] - score[x] || x - y);
  const cand = new Uint8Array(G);
  for (const g of order.slice(0, top)) cand[g] = 1;
  return { cand, em, gm };
}

/**
 * Estimated logits of every slot: [rows][n] = ((q8_r · k8_j over the channels of pickQuads' `quads`
 * quads)·f_r)·ks_j in f32 (quads = d/4, the default: every channel) (f_r = qs_r·scale rounded to
 * f32: the native kernel's roundings), −∞ off the candidates (always-attended slots, groups the prefilter
 * left out); valid [n] marks the candidates; [rows] the log-normalizer estimate lse_r = m_r + log(Σ_b
 * exp(best_b − m_r) + the other groups' clustered mass), m_r the max (with the prefilter's gm), best_b the
 * best candidate logit of 16-slot block b: each block counted by its best key, so lse_r lies within log 16
 * below the candidates' log-sum-exp, and a step takes no exponential per key.
 */
export function scoreKeys(
  s: KeySketch,
  q: Float32Array,
  rows: number,
  scale: number,
  pre: Prefilter | null = null,
  quads = s.d / 4,
): { logits: Float32Array; lse: Float32Array; valid: Uint8Array } {
  const { n, d, q8: k8, kScale } = s;
  const { q8, scale: qs } = quantizeRows(q, rows, d);
  // the scored channels (in channel order)
  const ch = Array.from(pickQuads(s, q8, rows, quads)).flatMap((t) =>
    [0, 1, 2, 3].map((i) => s.perm[4 * t + i]),
  );
  const valid = new Uint8Array(n);
  for (let j = 0; j < n; j++) valid[j] = s.group[j] >= 0 && (!pre || pre.cand[s.group[j]]) ? 1 : 0;
  const logits = new Float32Array(rows * n).fill(Number.NEGATIVE_INFINITY);
  const lse = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const f = Math.fround(qs[r] * scale);
    const qo = r * d;
    let m = pre ? pre.gm[r] : Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      if (!valid[j]) continue;
      let acc = 0;
      const ko = j * d;
      for (const e of ch) acc += q8[qo + e] * k8[ko + e];
      const v = Math.fround(Math.fround(acc * f) * kScale[j]);
      logits[r * n + j] = v;
      if (v > m) m = v;
    }
    if (m === Number.NEGATIVE_INFINITY) m = 0;
    // each 16-slot block by its best candidate (src/squeezed.cc: no exponential per key)
    let z = 0;
    for (let b = 0; b < n; b += PICK_BLOCK) {
      let bm = Number.NEGATIVE_INFINITY;
      for (let j = b; j < Math.min(n, b + PICK_BLOCK); j++)
        if (valid[j] && logits[r * n + j] > bm) bm = logits[r * n + j];
      if (bm > Number.NEGATIVE_INFINITY) z += Math.exp(bm - m);
    }
    if (pre) z += otherMass(s, pre, r) * Math.exp(pre.gm[r] - m);
    lse[r] = z > 0 ? m + Math.log(z) : m;
  }
  return { logits, lse, valid };
}

/** Σ over the groups the prefilter left out of len·exp(est − gm) for row r. */
function otherMass(s: KeySketch, pre: Prefilter, r: number): number {
  let z = 0;
  for (let g = 0; g < s.groups; g++) if (!pre.cand[g]) z += s.gLen[g] * pre.em[r * s.groups + g];
  return z;
}

/**
 * Per slot: the best estimated log softmax weight over rows, max_r f32(s_rj − lse_r); −∞ off the
 * candidates (src/squeezed.cc: the same f32 subtractions).
 */
export function keyLogWeights(
  s: KeySketch,
  logits: Float32Array,
  lse: Float32Array,
  rows: number,
  valid: Uint8Array,
): Float32Array {
  const w = new Float32Array(s.n).fill(Number.NEGATIVE_INFINITY);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < s.n; j++) {
      if (!valid[j]) continue;
      const v = Math.fround(logits[r * s.n + j] - lse[r]);
      if (v > w[j]) w[j] = v;
    }
  return w;
}

/** Slots per block of a budget step's choice (the native kernel's int8 block, src/squeezed.h SQ_BLOCK). */
export const PICK_BLOCK = 16;

/**
 * Keep mask [n] from the slots' log weights lw (keyLogWeights). Budget (take ≥ 0): the slots sit
 * cluster-major, so the choice is by blocks of PICK_BLOCK slots in cache order ([16i, 16i + 16)), ranked by
 * their best candidate's log weight (ties by block) and taken in that order, every candidate of a block
 * kept, while ⌊(take − kept)/16⌋ more blocks fit; then the next block's best candidates (ties by slot) up
 * to take — a block's one matching key keeps its block, and the kept rows are read as runs of contiguous
 * rows instead of scattered single rows. Threshold (take −1): the candidates with m·w ≥ τ (m: selectable
 * slots), i.e. lw ≥ f32(log(τ/m)), per key.
 */
export function pickKeys(s: KeySketch, lw: Float32Array, rule: { take: number; tau: number }): Uint8Array {
  const keep = new Uint8Array(s.n);
  const selectable = s.n - s.alwaysKeys;
  const cand = (j: number) => s.group[j] >= 0 && lw[j] > Number.NEGATIVE_INFINITY;
  if (rule.take < 0) {
    const cut = Math.fround(Math.log(rule.tau / Math.max(1, selectable)));
    for (let j = 0; j < s.n; j++) if (cand(j) && lw[j] >= cut) keep[j] = 1;
    return keep;
  }
  if (rule.take <= 0) return keep;
  const blocks = Math.ceil(s.n / PICK_BLOCK);
  const best = new Float32Array(blocks).fill(Number.NEGATIVE_INFINITY);
  for (let j = 0; j < s.n; j++) if (cand(j) && lw[j] > best[j >> 4]) best[j >> 4] = lw[j];
  const order = Array.from({ length: blocks }, (_, i) => i)
    .filter((i) => best[i] > Number.NEGATIVE_INFINITY)
    .sort((x, y) => best[y] - best[x] || x - y);
  // rounds of ⌊(take − kept)/16⌋ more blocks (a block's candidates may be fewer than 16), then one
  // block's best candidates up to take
  const lanes = (i: number) => {
    const out: number[] = [];
    for (let j = i * PICK_BLOCK; j < Math.min(s.n, (i + 1) * PICK_BLOCK); j++) if (cand(j)) out.push(j);
    return out;
  };
  let kept = 0;
  let at = 0;
  for (let full = Math.floor(rule.take / PICK_BLOCK); full > 0 && at < order.length; ) {
    for (const i of order.slice(at, at + full))
      for (const j of lanes(i)) {
        keep[j] = 1;
        kept++;
      }
    at = Math.min(order.length, at + full);
    full = Math.floor((rule.take - kept) / PICK_BLOCK);
  }
  if (at < order.length && kept < rule.take) {
    const top = lanes(order[at]).sort((x, y) => lw[y] - lw[x] || x - y);
    for (const j of top.slice(0, rule.take - kept)) keep[j] = 1;
  }
  return keep;
}

/**
 * The left-out keys' share per row, clustered attention: each group's slots not kept, c_g, join the
 * softmax as c_g·exp(est_rg) with the group's mean value, est_rg = ((q8_r · gMean8_g over every
 * channel)·f_r)·gMeanScale_g (the keys' roundings; src/squeezed.cc scores the groups' int8 mean keys as it
 * does the keys): out_r = Σ_g c_g·exp(est_rg − R_r)·v̄_g / Z_r, lse_r = R_r + log Z_r, R_r = max_g est_rg
 * (−∞ and zeros where nothing is left out). out: [rows][d], lse: [rows]. Needs s.values.
 */
export function leftOutShare(
  s: KeySketch,
  keep: Uint8Array,
  q: Float32Array,
  rows: number,
  scale: number,
): { out: Float32Array; lse: Float32Array } {
  const { d, groups } = s;
  const values = s.values!;
  const out = new Float32Array(rows * d);
  const lse = new Float32Array(rows).fill(Number.NEGATIVE_INFINITY);
  const left = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    let c = s.gLen[g];
    for (let j = s.gStart[g]; j < s.gStart[g] + s.gLen[g]; j++) c -= keep[j];
    left[g] = c;
  }
  const { q8, scale: qs } = quantizeRows(q, rows, d);
  const est = new Float32Array(groups);
  const wg = new Float64Array(groups);
  for (let r = 0; r < rows; r++) {
    const f = Math.fround(qs[r] * scale);
    let R = Number.NEGATIVE_INFINITY;
    for (let g = 0; g < groups; g++) {
      let acc = 0;
      for (let e = 0; e < d; e++) acc += q8[r * d + e] * s.gMean8[g * d + e];
      est[g] = Math.fround(Math.fround(acc * f) * s.gMeanScale[g]);
      if (est[g] > R) R = est[g];
    }
    let z = 0;
    for (let g = 0; g < groups; g++) {
      wg[g] = left[g] * Math.exp(est[g] - R);
      z += wg[g];
    }
    if (!(z > 0)) continue;
    for (let g = 0; g < groups; g++) {
      if (wg[g] === 0) continue;
      const f = wg[g] / z;
      for (let e = 0; e < d; e++) out[r * d + e] += f * values[g * d + e];
    }
    lse[r] = R + Math.log(z);
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
