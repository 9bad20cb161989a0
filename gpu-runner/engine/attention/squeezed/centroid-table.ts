// The per-(layer, kv head) centroid table of a request's fixed context (DESIGN.md §4.2) and the scoring
// of one step against it. Every indexed block's clusters are concatenated: rows centroid·scale (rotated
// by the block's offset) and a bias log n_c, so q·rowᵀ + bias = q·c·scale + log n_c and a row softmax
// gives n_c·p̂_c. Stored f16 where the backend takes it (the table is read at every step). On the host:
// each row's radius (bound-aware scores, select.ts) and mean value (the dropped clusters' approximated
// share). The window of every indexed block but the last is a row too (a cluster of its W keys, where the
// index summarises it): the fixed context keeps one window, at its end.
//
// Second level (centroids of centroids), used from `twoLevelFrom` clusters per head: clusters are already
// numbered so that similar ones are adjacent (index.ts), so runs of GROUP consecutive clusters of a block
// form groups with their own row (size-weighted mean centroid, log of the group's keys). A step scores
// the groups first, keeps the best groups until they hold ≥ 95% of the estimated mass (and, in budget
// mode, twice the key budget), and scores only those groups' clusters (gathered rows): the table is no
// longer read whole. Their p̂ is normalised within the kept groups and scaled by the kept mass, an
// estimate of the global normalisation; clusters of other groups score 0.
import type { Backend, Tensor } from '../../backends/types.ts';
import { f32ToF16 } from '../../half.ts';
import { boundExtra, boundScores, queryBounds } from './select.ts';
import type { SqueezedIndex } from './types.ts';

/** One block of the fixed context: cache positions [offset, offset + n), with its chunk's index or null. */
export interface PlacedBlock {
  offset: number;
  n: number;
  index: SqueezedIndex | null;
}

export const GROUP = 32;
/** Groups are kept until they hold this share of the estimated attention mass. */
const GROUP_MASS = 0.95;

export interface CentroidTable {
  k: number;
  /** [k, d] cluster rows and [k] log n_c, null when no block has clusters */
  c: Tensor | null;
  logN: Tensor | null;
  logNHost: Float32Array;
  /** [k][d/2] pair radii of each row's keys (0 where the index has none), and on the device */
  radius: Float32Array;
  rad: Tensor | null;
  /** [d][k] mean value of each row's keys, transposed, on the device; null when a block's index has none */
  values: Tensor | null;
  /** [k + 1] cumulative cluster sizes (select.ts's CSR) */
  starts: Int32Array;
  /** [k] first cache slot of each cluster */
  slot: Int32Array;
  /** second level, or null below twoLevelFrom: [G, d] group rows + [G] log keys; clusters of group i = [gStart[i], gStart[i+1]) */
  groups: { c: Tensor; logN: Tensor; count: number; gStart: Int32Array; keys: Float64Array } | null;
  /** coalesced [start, end) ranges always attended: windows and unindexed blocks */
  always: Int32Array;
  alwaysKeys: number;
}

/** Sorts and merges [start, end) pairs. */
export function coalesce(pairs: number[]): Int32Array {
  const idx = Array.from({ length: pairs.length / 2 }, (_, i) => i).sort(
    (a, b) => pairs[2 * a] - pairs[2 * b],
  );
  const out: number[] = [];
  for (const i of idx) {
    const s = pairs[2 * i];
    const e = pairs[2 * i + 1];
    if (e <= s) continue;
    if (out.length > 0 && out[out.length - 1] >= s) out[out.length - 1] = Math.max(out[out.length - 1], e);
    else out.push(s, e);
  }
  return Int32Array.from(out);
}

/** Rotated rows [rows, d] as a device table (f16 where the backend takes it). */
function uploadRows(b: Backend, rows: Float32Array, d: number): Tensor {
  const shape = [rows.length / d, d];
  return b.caps.weightDTypes.includes('f16')
    ? b.upload({ dtype: 'f16', shape, data: f32ToF16(rows) })
    : b.upload({ dtype: 'f32', shape, data: rows });
}

export function buildCentroidTable(
  b: Backend,
  blocks: readonly PlacedBlock[],
  l: number,
  g: number,
  geom: { headDim: number; scale: number },
  invFreq: Tensor,
  twoLevelFrom: number,
): CentroidTable {
  const d = geom.headDim;
  const always: number[] = [];
  const last = blocks.length - 1;
  let clusters = 0;
  for (const bl of blocks) clusters += bl.index ? bl.index.heads[l * bl.index.kvHeads + g].k : 0;
  const two = clusters >= twoLevelFrom;
  // the window of block i is a row when it does not end the fixed context and its index summarises it
  // (not with the second level, whose groups cover clusters only)
  const winRow = (i: number) =>
    !two && i !== last && blocks[i].index?.heads[l * blocks[i].index!.kvHeads + g].win != null;
  let k = 0;
  blocks.forEach((bl, i) => {
    k += bl.index ? bl.index.heads[l * bl.index.kvHeads + g].k + (winRow(i) ? 1 : 0) : 0;
  });
  const radius = new Float32Array((k * d) / 2);
  let values: Float32Array | null = new Float32Array(k * d);
  const starts = new Int32Array(k + 1);
  const slot = new Int32Array(k);
  const gStart: number[] = [0];
  const rows: number[] = []; // raw (unrotated) rows: clusters, then groups
  const pos: number[] = [];
  const groupRows: number[] = [];
  const groupPos: number[] = [];
  const groupKeys: number[] = [];
  let j = 0;
  blocks.forEach((bl, bi) => {
    if (!bl.index) {
      always.push(bl.offset, bl.offset + bl.n);
      return;
    }
    const ix = bl.index;
    const h = ix.heads[l * ix.kvHeads + g];
    if (!h.values) values = null;
    for (let c = 0; c < h.k; c++, j++) {
      starts[j + 1] = starts[j] + h.starts[c + 1] - h.starts[c];
      slot[j] = bl.offset + h.starts[c];
      pos.push(bl.offset);
      for (let e = 0; e < d; e++) rows.push(h.centroids[c * d + e] * geom.scale);
      if (h.radius) radius.set(h.radius.subarray((c * d) / 2, ((c + 1) * d) / 2), (j * d) / 2);
      if (values && h.values) values.set(h.values.subarray(c * d, (c + 1) * d), j * d);
    }
    if (two)
      for (let c0 = 0; c0 < h.k; c0 += GROUP) {
        const c1 = Math.min(h.k, c0 + GROUP);
        const mean = new Float64Array(d);
        let keys = 0;
        for (let c = c0; c < c1; c++) {
          const size = h.starts[c + 1] - h.starts[c];
          keys += size;
          for (let e = 0; e < d; e++) mean[e] += size * h.centroids[c * d + e];
        }
        for (let e = 0; e < d; e++) groupRows.push((mean[e] / keys) * geom.scale);
        groupPos.push(bl.offset);
        groupKeys.push(keys);
        gStart.push(j - h.k + c1);
      }
    if (winRow(bi)) {
      // the window [n − W, n) as one more row (after the block's clusters: rows stay in slot order)
      const w = h.win!;
      starts[j + 1] = starts[j] + ix.window;
      slot[j] = bl.offset + bl.n - ix.window;
      pos.push(bl.offset);
      for (let e = 0; e < d; e++) rows.push(w.centroid[e] * geom.scale);
      radius.set(w.radius, (j * d) / 2);
      if (values && w.value) values.set(w.value, j * d);
      else values = null;
      j++;
    } else always.push(bl.offset + bl.n - ix.window, bl.offset + bl.n);
  });
  const ranges = coalesce(always);
  let alwaysKeys = 0;
  for (let t = 0; t < ranges.length; t += 2) alwaysKeys += ranges[t + 1] - ranges[t];
  const logNHost = Float32Array.from({ length: k }, (_, i) => Math.log(starts[i + 1] - starts[i]));
  if (k === 0)
    return {
      k,
      c: null,
      logN: null,
      logNHost,
      radius,
      rad: null,
      values: null,
      starts,
      slot,
      groups: null,
      always: ranges,
      alwaysKeys,
    };
  // rotate every row by its block's offset, as assembly re-rotates the block's keys (exact: the same
  // linear map for every key of a block, so the mean of rotated keys is the rotated mean)
  const all = Float32Array.from([...rows, ...groupRows]);
  const raw = b.upload({ dtype: 'f32', shape: [all.length / d, d], data: all });
  const posT = b.upload({
    dtype: 'i32',
    shape: [all.length / d],
    data: Int32Array.from([...pos, ...groupPos]),
  });
  const rotT = b.rope(raw, posT, invFreq, d);
  const rot = b.readNow!(rotT);
  for (const x of [raw, posT, rotT]) b.free(x);
  const c = uploadRows(b, rot.subarray(0, k * d), d);
  const logN = b.upload({ dtype: 'f32', shape: [k], data: logNHost });
  const groups = two
    ? {
        c: uploadRows(b, rot.subarray(k * d), d),
        logN: b.upload({
          dtype: 'f32',
          shape: [groupKeys.length],
          data: Float32Array.from(groupKeys, Math.log),
        }),
        count: groupKeys.length,
        gStart: Int32Array.from(gStart),
        keys: Float64Array.from(groupKeys),
      }
    : null;
  const rad = uploadRows(b, radius, d / 2);
  let valuesT: Tensor | null = null;
  if (values) {
    const vt = new Float32Array(d * k); // [d][k]
    for (let c2 = 0; c2 < k; c2++) for (let e = 0; e < d; e++) vt[e * k + c2] = values[c2 * d + e];
    valuesT = uploadRows(b, vt, k);
  }
  return {
    k,
    c,
    logN,
    logNHost,
    radius,
    rad,
    values: valuesT,
    starts,
    slot,
    groups,
    always: ranges,
    alwaysKeys,
  };
}

export function freeCentroidTable(b: Backend, t: CentroidTable): void {
  for (const x of [t.c, t.logN, t.rad, t.values, t.groups?.c, t.groups?.logN]) if (x) b.free(x);
}

/** Mean over rows of softmax(q · tableᵀ + bias): [cols]. q: [rows, d] on the device. */
function meanSoftmax(
  b: Backend,
  qa: Tensor,
  table: Tensor,
  bias: Tensor,
  rows: number,
  cols: number,
): Float32Array {
  const logits = b.matmul(qa, table, bias);
  const p = b.softmax(logits);
  const m = b.readNow!(p);
  b.free(logits);
  b.free(p);
  const out = new Float32Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c] += m[r * cols + c];
  for (let c = 0; c < cols; c++) out[c] /= rows;
  return out;
}

/** Logits q · tableᵀ + bias on the host: [rows, cols]. q: [rows, d] on the device. */
function logitsOf(b: Backend, qa: Tensor, table: Tensor, bias: Tensor | null): Float32Array {
  const logits = bias ? b.matmul(qa, table, bias) : b.matmul(qa, table);
  const out = b.readNow!(logits);
  b.free(logits);
  return out;
}

export interface TableScores {
  /** [k] bound-aware per-key score u of every row (0 for rows the second level skips) */
  score: Float32Array;
  /** table rows read */
  rowsRead: number;
  /** [rows][k] logits q·c·scale + log n_c, their row softmax and [rows] log-sum-exp; null with the second level */
  logits: Float32Array | null;
  probs: Float32Array | null;
  lse: Float32Array | null;
}

/**
 * Scores of every row of t for queries qa ([rows, d] on the device; qHost the same on the host).
 * targetKeys: the budget's clustered keys (0 in threshold mode).
 */
export function scoreTable(
  b: Backend,
  t: CentroidTable,
  qa: Tensor,
  qHost: Float32Array,
  rows: number,
  targetKeys: number,
  scale: number,
): TableScores {
  const d = qHost.length / rows;
  const bound = queryBounds(qHost, rows, d, scale);
  if (!t.groups) {
    const logitsT = b.matmul(qa, t.c!, t.logN!);
    const pT = b.softmax(logitsT);
    const logits = b.readNow!(logitsT);
    const probs = b.readNow!(pT);
    b.free(logitsT);
    b.free(pT);
    // the bound's extra logits Σ_i ‖q_i‖·r_ci·scale: one more matmul, [rows, d/2] × radiiᵀ
    const bq = b.upload({ dtype: 'f32', shape: [rows, d / 2], data: bound });
    const extra = logitsOf(b, bq, t.rad!, null);
    b.free(bq);
    const lse = new Float32Array(rows);
    const score = boundScores(logits, rows, t.k, t.logNHost, extra, lse, probs);
    return { score, rowsRead: t.k, logits, probs, lse };
  }
  const score = new Float32Array(t.k);
  const gr = t.groups;
  const gm = meanSoftmax(b, qa, gr.c, gr.logN, rows, gr.count);
  const order = Array.from({ length: gr.count }, (_, i) => i).sort(
    (x, y) => gm[y] / gr.keys[y] - gm[x] / gr.keys[x],
  );
  const kept: number[] = [];
  let mass = 0;
  let keys = 0;
  for (const i of order) {
    if (mass >= GROUP_MASS && keys >= 2 * targetKeys) break;
    kept.push(i);
    mass += gm[i];
    keys += gr.keys[i];
  }
  kept.sort((x, y) => x - y);
  const ids: number[] = [];
  for (const i of kept) for (let c = gr.gStart[i]; c < gr.gStart[i + 1]; c++) ids.push(c);
  const idT = b.upload({ dtype: 'i32', shape: [ids.length], data: Int32Array.from(ids) });
  const sub = b.gather(t.c!, idT); // [ids, d] f32
  b.free(idT);
  const subLogN = Float32Array.from(ids, (c) => t.logNHost[c]);
  const bias = b.upload({ dtype: 'f32', shape: [ids.length], data: subLogN });
  const logits = logitsOf(b, qa, sub, bias);
  b.free(sub);
  b.free(bias);
  const extra = boundExtra(bound, gatherRows(t.radius, ids, d / 2), rows, ids.length);
  const cm = boundScores(logits, rows, ids.length, subLogN, extra);
  // normalised within the kept groups: scaled by their share of the estimated mass
  ids.forEach((c, i) => {
    score[c] = cm[i] * mass;
  });
  return { score, rowsRead: gr.count + ids.length, logits: null, probs: null, lse: null };
}

/** Rows ids of x [*, w] → [ids, w]. */
function gatherRows(x: Float32Array, ids: readonly number[], w: number): Float32Array {
  const out = new Float32Array(ids.length * w);
  ids.forEach((c, i) => {
    out.set(x.subarray(c * w, (c + 1) * w), i * w);
  });
  return out;
}
