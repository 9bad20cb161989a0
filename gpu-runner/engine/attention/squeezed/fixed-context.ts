// Squeezed attention inside the engine (DESIGN.md §4.2): a request's fixed context — the blocks placed
// in its cache before the question, each with its chunk's index — and the attention step that uses it.
//
// Per (layer, kv head) the blocks' clusters are concatenated into one table: centroids·scale (rotated
// by each block's offset, like its keys) and log n_c on the device, and for every cluster the cache
// slots it fills. Each block sits in the cache cluster-major (layout.ts: cluster c of a block at offset
// o fills slots [o + starts[c], o + starts[c+1]); the window keeps [o + n − W, o + n)), so a selection
// is a short list of slot ranges. Blocks without an index (prefilled live, or an index refused) are
// attended in full and counted as unindexed.
//
// RoPE and centroids: a block's keys were computed at positions 0..n−1 and are re-rotated by Δ = its
// offset. Rotation by a fixed Δ is the same linear map for every key of the block, so the mean of the
// rotated keys is the rotated mean: rotating the stored centroids by Δ is exact (up to f32/f16
// rounding). What is approximate: the clusters were chosen on the stored (f16) keys, and keys rewritten
// by selective recompute (blend, link) keep their old cluster and centroid.
//
// A step (question prefill rows or one decode row of a sequence): per kv head, one matmul of the
// group's queries with the centroid table plus log n_c, a row softmax (= n_c·p̂_c per query), p̂ averaged
// over the group and the rows, then clusters chosen by threshold or budget (select.ts), then
// Backend.attentionRanges over the chosen slot ranges + always-kept ranges + the live tokens [n, pos].
import type { Backend, SeqSpan, Tensor } from '../../backends/types.ts';
import { chooseClusters, type SelectMode } from './select.ts';
import type { SqueezedIndex } from './types.ts';

/** One block of the fixed context: cache positions [offset, offset + n), with its chunk's index or null. */
export interface PlacedBlock {
  offset: number;
  n: number;
  index: SqueezedIndex | null;
}

export interface FixedGeom {
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

/** Per-response stats (summed over steps, layers and kv heads). */
export interface FixedContextStats {
  /** fixed-context keys attended */
  keysAttended: number;
  /** fixed-context keys present */
  fixedKeys: number;
  /** keysAttended / fixedKeys (1 = dense) */
  fraction: number;
  /** K and V bytes of the attended fixed-context keys plus the centroid bytes scored */
  bytesTouched: number;
  /** fixed-context tokens without an index (attended in full) */
  unindexedTokens: number;
}

interface HeadTable {
  k: number;
  c: Tensor | null; // [k, d] centroids·scale, rotated to the block's offset
  logN: Tensor | null; // [k] log n_c
  starts: Int32Array; // [k + 1] cumulative cluster sizes (select.ts's CSR)
  slot: Int32Array; // [k] first cache slot of each cluster
  always: Int32Array; // coalesced [start, end) ranges always attended: windows and unindexed blocks
  alwaysKeys: number;
}

const BYTES_PER_VALUE = 4; // the engine's cache is f32

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

export class FixedContext {
  readonly backend: Backend;
  readonly geom: FixedGeom;
  /** Fixed-context positions [0, n); live tokens start at n. */
  readonly n: number;
  readonly mode: SelectMode;
  readonly stats: FixedContextStats;
  private readonly tables: HeadTable[]; // [layer·kvHeads + g]
  private disposed = false;

  /**
   * blocks: the fixed context in cache order, covering [0, n) without gaps; each indexed block already
   * sits cluster-major in the cache (toClusterMajor). invFreq: the model's RoPE [headDim/2] on the device.
   */
  constructor(
    backend: Backend,
    geom: FixedGeom,
    blocks: readonly PlacedBlock[],
    mode: SelectMode,
    invFreq: Tensor,
  ) {
    if (!backend.attentionRanges || !backend.readNow)
      throw new Error(`squeezed attention: backend ${backend.name} lacks attentionRanges/readNow`);
    this.backend = backend;
    this.geom = geom;
    this.mode = mode;
    let at = 0;
    for (const bl of blocks) {
      if (bl.offset !== at) throw new Error(`fixed context: block at ${bl.offset}, expected ${at}`);
      if (bl.index && bl.index.n !== bl.n) throw new Error('fixed context: index of another length');
      at += bl.n;
    }
    this.n = at;
    this.stats = {
      keysAttended: 0,
      fixedKeys: 0,
      fraction: 0,
      bytesTouched: 0,
      unindexedTokens: blocks.reduce((s, bl) => s + (bl.index ? 0 : bl.n), 0),
    };
    this.tables = [];
    for (let l = 0; l < geom.layers; l++)
      for (let g = 0; g < geom.kvHeads; g++) this.tables.push(this.buildTable(blocks, l, g, invFreq));
  }

  private buildTable(blocks: readonly PlacedBlock[], l: number, g: number, invFreq: Tensor): HeadTable {
    const b = this.backend;
    const d = this.geom.headDim;
    const always: number[] = [];
    let k = 0;
    for (const bl of blocks) k += bl.index ? bl.index.heads[l * bl.index.kvHeads + g].k : 0;
    const starts = new Int32Array(k + 1);
    const slot = new Int32Array(k);
    const cent = new Float32Array(k * d);
    const pos = new Int32Array(k);
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
        pos[j] = bl.offset;
        for (let e = 0; e < d; e++) cent[j * d + e] = h.centroids[c * d + e] * this.geom.scale;
      }
      always.push(bl.offset + bl.n - ix.window, bl.offset + bl.n);
    }
    const ranges = coalesce(always);
    let alwaysKeys = 0;
    for (let t = 0; t < ranges.length; t += 2) alwaysKeys += ranges[t + 1] - ranges[t];
    if (k === 0) return { k, c: null, logN: null, starts, slot, always: ranges, alwaysKeys };
    // rotate every centroid by its block's offset, as assembly re-rotates the block's keys
    const raw = b.upload({ dtype: 'f32', shape: [k, d], data: cent });
    const posT = b.upload({ dtype: 'i32', shape: [k], data: pos });
    const c = b.rope(raw, posT, invFreq, d);
    b.free(raw);
    b.free(posT);
    const logN = Float32Array.from({ length: k }, (_, i) => Math.log(starts[i + 1] - starts[i]));
    return {
      k,
      c,
      logN: b.upload({ dtype: 'f32', shape: [k], data: logN }),
      starts,
      slot,
      always: ranges,
      alwaysKeys,
    };
  }

  /** Clusters worth attending for rows [row, row + count) of q ([M][heads·headDim] on the host). */
  private chosen(q: Float32Array, row: number, count: number, layer: number, g: number): number[] {
    const t = this.tables[layer * this.geom.kvHeads + g];
    if (!t.c || !t.logN) return [];
    const b = this.backend;
    const { heads, kvHeads, headDim: d } = this.geom;
    const group = heads / kvHeads;
    const qg = new Float32Array(count * group * d);
    for (let i = 0; i < count; i++) {
      const from = ((row + i) * heads + g * group) * d;
      qg.set(q.subarray(from, from + group * d), i * group * d);
    }
    const qt = b.upload({ dtype: 'f32', shape: [count * group, d], data: qg });
    const logits = b.matmul(qt, t.c, t.logN); // [rows·group, k] = q·c·scale + log n_c
    const massT = b.softmax(logits); // n_c·p̂_c per (row, head)
    const mass = b.readNow!(massT);
    for (const x of [qt, logits, massT]) b.free(x);
    // p̂ averaged over the rows and the group's heads
    const { k } = t;
    const rows = count * group;
    const score = new Float32Array(k);
    for (let r = 0; r < rows; r++) {
      const o = r * k;
      for (let c = 0; c < k; c++) score[c] += mass[o + c];
    }
    for (let c = 0; c < k; c++) score[c] /= rows * (t.starts[c + 1] - t.starts[c]);
    return chooseClusters({ k: t.k, starts: t.starts }, score, this.n, t.alwaysKeys, this.mode);
  }

  /** Key ranges per kv head for one span of a step; adds to the stats. qHost: the step's q on the host. */
  keysFor(qHost: Float32Array, span: SeqSpan, layer: number): Int32Array[] {
    if (this.disposed) throw new Error('fixed context used after dispose()');
    if (span.pos < this.n) throw new Error('squeezed attention: a query inside the fixed context');
    const { kvHeads, headDim: d } = this.geom;
    const lists: Int32Array[] = [];
    for (let g = 0; g < kvHeads; g++) {
      const t = this.tables[layer * kvHeads + g];
      const pairs: number[] = Array.from(t.always);
      let keys = t.alwaysKeys;
      for (const c of this.chosen(qHost, span.row, span.count, layer, g)) {
        pairs.push(t.slot[c], t.slot[c] + t.starts[c + 1] - t.starts[c]);
        keys += t.starts[c + 1] - t.starts[c];
      }
      pairs.push(this.n, span.pos + span.count);
      lists.push(coalesce(pairs));
      this.stats.keysAttended += keys;
      this.stats.fixedKeys += this.n;
      this.stats.bytesTouched += keys * 2 * d * BYTES_PER_VALUE + t.k * d * 4;
    }
    this.stats.fraction = this.stats.fixedKeys > 0 ? this.stats.keysAttended / this.stats.fixedKeys : 0;
    return lists;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.tables) for (const x of [t.c, t.logN]) if (x) this.backend.free(x);
  }
}

/**
 * The attention of one decoder layer when some sequences of the step have a fixed context: those
 * spans attend to their selected ranges (+ live tokens), the others densely. Drop-in for
 * Backend.attention. fixed[i] belongs to spans[i].
 */
export function attendWithFixedContexts(
  b: Backend,
  q: Tensor,
  layer: number,
  spans: readonly SeqSpan[],
  fixed: readonly (FixedContext | null)[],
  heads: number,
  scale: number,
): Tensor {
  const qHost = b.readNow!(q);
  const keys = spans.map((s, i) => fixed[i]?.keysFor(qHost, s, layer) ?? null);
  return b.attentionRanges!(q, layer, spans, keys, heads, scale);
}
