// The per-(layer, kv head) centroid table of a request's fixed context (DESIGN.md §4.2) and the scoring
// of one step against it. Every indexed block's clusters are concatenated: rows centroid·scale (rotated
// by the block's offset) and a bias log n_c, so q·rowᵀ + bias = q·c·scale + log n_c and a row softmax
// gives n_c·p̂_c. Stored f16 where the backend takes it (the table is read at every step).
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
  let k = 0;
  for (const bl of blocks) k += bl.index ? bl.index.heads[l * bl.index.kvHeads + g].k : 0;
  const starts = new Int32Array(k + 1);
  const slot = new Int32Array(k);
  const two = k >= twoLevelFrom;
  const gStart: number[] = [0];
  const rows: number[] = []; // raw (unrotated) rows: clusters, then groups
  const pos: number[] = [];
  const groupRows: number[] = [];
  const groupPos: number[] = [];
  const groupKeys: number[] = [];
  let j = 0;
  for (const bl of blocks) {
    if (!bl.index) {
      always.push(bl.offset, bl.offset + bl.n);
      continue;
    }
    const ix = bl.index;
    const h = ix.heads[l * ix.kvHeads + g];
    for (let c = 0; c < h.k; c++, j++) {
      starts[j + 1] = starts[j] + h.starts[c + 1] - h.starts[c];
      slot[j] = bl.offset + h.starts[c];
      pos.push(bl.offset);
      for (let e = 0; e < d; e++) rows.push(h.centroids[c * d + e] * geom.scale);
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
    always.push(bl.offset + bl.n - ix.window, bl.offset + bl.n);
  }
  const ranges = coalesce(always);
  let alwaysKeys = 0;
  for (let t = 0; t < ranges.length; t += 2) alwaysKeys += ranges[t + 1] - ranges[t];
  const logNHost = Float32Array.from({ length: k }, (_, i) => Math.log(starts[i + 1] - starts[i]));
  if (k === 0)
    return { k, c: null, logN: null, logNHost, starts, slot, groups: null, always: ranges, alwaysKeys };
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
  return { k, c, logN, logNHost, starts, slot, groups, always: ranges, alwaysKeys };
}

export function freeCentroidTable(b: Backend, t: CentroidTable): void {
  for (const x of [t.c, t.logN, t.groups?.c, t.groups?.logN]) if (x) b.free(x);
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

/**
 * Per-key score p̂ of every cluster of t (0 for clusters the second level skips) for queries qa
 * ([rows, d] on the device). targetKeys: the budget's clustered keys (0 in threshold mode).
 * Returns the scores and the centroid rows read.
 */
export function scoreTable(
  b: Backend,
  t: CentroidTable,
  qa: Tensor,
  rows: number,
  targetKeys: number,
): { score: Float32Array; rowsRead: number } {
  const size = (c: number) => t.starts[c + 1] - t.starts[c];
  const score = new Float32Array(t.k);
  if (!t.groups) {
    const mass = meanSoftmax(b, qa, t.c!, t.logN!, rows, t.k);
    for (let c = 0; c < t.k; c++) score[c] = mass[c] / size(c);
    return { score, rowsRead: t.k };
  }
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
  const bias = b.upload({
    dtype: 'f32',
    shape: [ids.length],
    data: Float32Array.from(ids, (c) => t.logNHost[c]),
  });
  const cm = meanSoftmax(b, qa, sub, bias, rows, ids.length);
  b.free(sub);
  b.free(bias);
  ids.forEach((c, i) => {
    score[c] = (cm[i] * mass) / size(c);
  });
  return { score, rowsRead: gr.count + ids.length };
}
