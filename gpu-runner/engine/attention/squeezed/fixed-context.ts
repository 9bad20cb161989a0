// Squeezed attention inside the engine (DESIGN.md §4.2): a request's fixed context — the blocks placed
// in its cache before the question, each with its chunk's index — and the attention step that uses it.
//
// Per (layer, kv head) the blocks' clusters are concatenated into one centroid table on the device
// (centroid-table.ts: rotated by each block's offset like its keys, with log n_c; optionally a second
// level of groups), and for every cluster the cache slots it fills. Each block sits in the cache cluster-major (layout.ts: cluster c of a block at offset
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
// A step (question prefill rows or one decode row of a sequence): per kv head, the group's queries
// score the table (a matmul and a row softmax = n_c·p̂_c per query; p̂ averaged over the group and the
// rows; bound-aware, select.ts), clusters are chosen by threshold or budget (per-head budgets when the
// mode has them; the budget counts the always-kept keys and the live tokens), then attention over the
// chosen slot ranges + always-kept ranges + the live tokens [n, pos] (a FixedContext is the KeyRangeSource
// of a sequence's `ranges` attention, step-attention.ts). The clusters not chosen are not discarded when
// the mode approximates (the default, where the indexes carry value means): per query head they form one
// more partial — softmax over their logits q·c·scale + log n_c with their mean values, clustered-attention
// style, from the logits the scoring already computed — merged with the exact part by log-sum-exp.
import type { Backend, SeqSpan, Tensor } from '../../backends/types.ts';
import type { DroppedPartial, KeyRangeSource, RangeChoice } from '../step-attention.ts';
import {
  buildCentroidTable,
  type CentroidTable,
  coalesce,
  freeCentroidTable,
  type PlacedBlock,
  scoreTable,
} from './centroid-table.ts';
import {
  buildKeySketch,
  type KeySketch,
  keptRanges,
  keyLogWeights,
  leftOutShare,
  pickKeys,
  prefilter,
  scoreKeys,
  scoreQuads,
  DEFAULT_PREFILTER,
  DEFAULT_SCORE_CHANNELS,
} from './key-sketch.ts';
import { type KeepRule, NativeSketches } from './native-step.ts';
import { chooseClusters, type SelectMode } from './select.ts';

export { coalesce, type PlacedBlock };

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

const BYTES_PER_VALUE = 4; // the engine's cache is f32
/**
 * Clusters per (layer, kv head) from which the second level scores first. Off by default: on wasm it
 * did not pay up to 64K tokens (3274 clusters per head: 0.79 → 1.13 ms selection per layer, cold), its
 * gather + second matmul costing more than the table rows it skips; `bench squeezed --two-level-from`.
 */
export const TWO_LEVEL_FROM = Number.POSITIVE_INFINITY;

export class FixedContext implements KeyRangeSource {
  readonly backend: Backend;
  readonly geom: FixedGeom;
  /** Fixed-context positions [0, n); live tokens start at n. */
  readonly n: number;
  readonly mode: SelectMode;
  readonly stats: FixedContextStats;
  private readonly tables: CentroidTable[]; // [layer·kvHeads + g]
  /** per-key scoring (key-sketch.ts), [layer·kvHeads + g]; null = clusters scored by their centroids */
  private readonly sketches: KeySketch[] | null;
  /** the fused step on the native backend (native-step.ts), null elsewhere */
  private readonly native: NativeSketches | null;
  private disposed = false;

  /**
   * blocks: the fixed context in cache order, covering [0, n) without gaps; each indexed block already
   * sits cluster-major in the cache (toClusterMajor). invFreq: the model's RoPE [headDim/2] on the device.
   * twoLevelFrom: clusters per head from which the second level is used. keys: the fixed context's keys
   * per layer ([kv_head][n][d], cache order) for per-key scoring (the default when given; mode.scoring
   * 'clusters' scores the centroid table instead).
   */
  constructor(
    backend: Backend,
    geom: FixedGeom,
    blocks: readonly PlacedBlock[],
    mode: SelectMode,
    invFreq: Tensor,
    twoLevelFrom = TWO_LEVEL_FROM,
    keys: readonly Float32Array[] | null = null,
  ) {
    if (!backend.caps.attentionRanges || !backend.caps.readNow)
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
    if (mode.kind === 'budget' && mode.perHead && mode.perHead.length !== geom.layers * geom.kvHeads)
      throw new Error(
        `squeezed attention: ${mode.perHead.length} head budgets for ${geom.layers}×${geom.kvHeads} (layer, kv head)`,
      );
    this.stats = {
      keysAttended: 0,
      fixedKeys: 0,
      fraction: 0,
      bytesTouched: 0,
      unindexedTokens: blocks.reduce((s, bl) => s + (bl.index ? 0 : bl.n), 0),
    };
    this.tables = [];
    this.quads(); // a bad channel count is refused here, not at the first step
    const perKey = keys !== null && mode.scoring !== 'clusters';
    if (perKey && keys.length !== geom.layers) throw new Error('fixed context: keys of every layer needed');
    this.sketches = perKey ? [] : null;
    const { kvHeads, headDim: d } = geom;
    for (let l = 0; l < geom.layers; l++)
      for (let g = 0; g < kvHeads; g++) {
        if (this.sketches) {
          const k = keys![l].subarray(g * this.n * d, (g + 1) * this.n * d);
          this.sketches.push(buildKeySketch(k, blocks, l, g, d));
        } else this.tables.push(buildCentroidTable(backend, blocks, l, g, geom, invFreq, twoLevelFrom));
      }
    this.native = this.sketches && mode.fused !== false ? NativeSketches.of(backend, this.sketches) : null;
  }

  /** What sketch ti keeps in a step with `live` live tokens: the budget's keys, or τ (take −1). */
  private ruleOf(ti: number, live: number): KeepRule {
    const s = this.sketches![ti];
    if (this.mode.kind === 'threshold') return { take: -1, tau: this.mode.tau };
    const f = this.fractionOf(ti);
    const selectable = s.n - s.alwaysKeys;
    const take = f >= 1 ? selectable : Math.ceil(f * this.n) - s.alwaysKeys - live;
    return { take: Math.max(0, Math.min(selectable, take)), tau: 0 };
  }

  private count(ti: number, kept: number): void {
    const s = this.sketches![ti];
    const keys = kept + s.alwaysKeys;
    const d = this.geom.headDim;
    this.stats.keysAttended += keys;
    this.stats.fixedKeys += this.n;
    this.stats.bytesTouched += keys * 2 * d * BYTES_PER_VALUE + s.n * (4 * this.quads() + 4);
    this.stats.fraction = this.stats.keysAttended / this.stats.fixedKeys;
  }

  /**
   * The step's attention for one span in one fused native call per row and kv head (native-step.ts), or
   * null where there is none (not the native backend, clusters scored): then keysFor + attentionRanges.
   */
  attend(
    q: Tensor,
    layer: number,
    span: SeqSpan,
    heads: number,
    scale: number,
    into?: Tensor,
  ): Tensor | null {
    if (!this.native) return null;
    if (this.disposed) throw new Error('fixed context used after dispose()');
    if (span.pos < this.n) throw new Error('squeezed attention: a query inside the fixed context');
    return this.native.attend(
      q,
      layer,
      span,
      heads,
      scale,
      (ti, live) => this.ruleOf(ti, live),
      (ti, kept) => this.count(ti, kept),
      this.mode.approximate !== false,
      this.prefilter(),
      this.quads(),
      into,
    );
  }

  /** Quads of channels a key is scored over (key-sketch.ts scoreQuads). */
  private quads(): number {
    return scoreQuads(this.geom.headDim, this.mode.channels ?? DEFAULT_SCORE_CHANNELS);
  }

  /** The prefilter's share of the keys scored per key (0: every key). */
  private prefilter(): number {
    return this.mode.prefilter ?? DEFAULT_PREFILTER;
  }

  fuses(_span: SeqSpan): boolean {
    return this.native !== null;
  }

  /** The budget fraction of table ti (per-head budgets when the mode has them). */
  private fractionOf(ti: number): number {
    const m = this.mode;
    if (m.kind !== 'budget') return 1;
    return m.perHead ? m.perHead[ti] : m.fraction;
  }

  /** keysFor with per-key scores: kv head g of layer l for the span's rows. */
  private keysByScore(qHost: Float32Array, span: SeqSpan, ti: number, g: number, into: RangeChoice): void {
    const s = this.sketches![ti];
    const { heads, kvHeads, headDim: d } = this.geom;
    const group = heads / kvHeads;
    const rows = span.count * group;
    const qa = new Float32Array(rows * d);
    for (let i = 0; i < span.count; i++) {
      const from = ((span.row + i) * heads + g * group) * d;
      qa.set(qHost.subarray(from, from + group * d), i * group * d);
    }
    const rule = this.ruleOf(ti, span.pos + span.count - this.n);
    const pre = prefilter(s, qa, rows, this.geom.scale, rule.take, this.prefilter());
    const { logits, lse, valid } = scoreKeys(s, qa, rows, this.geom.scale, pre, this.quads());
    const keep = pickKeys(s, keyLogWeights(s, logits, lse, rows, valid), rule);
    let kept = 0;
    for (let j = 0; j < s.n; j++) kept += keep[j];
    into.keys.push(keptRanges(s, keep, span.pos + span.count));
    if (this.mode.approximate !== false && s.values && kept + s.alwaysKeys < s.n) {
      const part = leftOutShare(s, keep, qa, rows, this.geom.scale);
      into.dropped ??= {
        out: new Float32Array(span.count * heads * d),
        lse: new Float32Array(span.count * heads).fill(Number.NEGATIVE_INFINITY),
      };
      for (let i = 0; i < span.count; i++)
        for (let j = 0; j < group; j++) {
          const r = i * group + j;
          const h = g * group + j;
          into.dropped.out.set(part.out.subarray(r * d, (r + 1) * d), (i * heads + h) * d);
          into.dropped.lse[i * heads + h] = part.lse[r];
        }
    }
    this.count(ti, kept);
  }

  /**
   * Clusters worth attending for rows [row, row + count) of q ([M][heads·headDim] on the host), table
   * t = layer·kvHeads + g; live: live tokens the rows attend (inside the budget).
   */
  private chosen(ti: number, q: Float32Array, row: number, count: number, g: number, live: number) {
    const t = this.tables[ti];
    if (!t.c) return { kept: [] as number[], rowsRead: 0, probs: null, lse: null };
    const b = this.backend;
    const { heads, kvHeads, headDim: d } = this.geom;
    const group = heads / kvHeads;
    const rows = count * group;
    const qa = new Float32Array(rows * d);
    for (let i = 0; i < count; i++) {
      const from = ((row + i) * heads + g * group) * d;
      qa.set(q.subarray(from, from + group * d), i * group * d);
    }
    const qt = b.upload({ dtype: 'f32', shape: [rows, d], data: qa });
    const mode: SelectMode =
      this.mode.kind === 'budget' && this.mode.perHead
        ? { kind: 'budget', fraction: this.mode.perHead[ti] }
        : this.mode;
    const spent = t.alwaysKeys + live;
    const target = mode.kind === 'budget' ? Math.ceil(mode.fraction * this.n) - spent : 0;
    const s = scoreTable(b, t, qt, qa, rows, Math.max(0, target), this.geom.scale);
    b.free(qt);
    return {
      kept: chooseClusters(t, s.score, this.n, spent, mode),
      rowsRead: s.rowsRead,
      probs: s.probs,
      lse: s.lse,
    };
  }

  /** Key ranges per kv head for one span of a step; adds to the stats. qHost: the step's q on the host. */
  keysFor(qHost: Float32Array, span: SeqSpan, layer: number): RangeChoice {
    if (this.disposed) throw new Error('fixed context used after dispose()');
    if (span.pos < this.n) throw new Error('squeezed attention: a query inside the fixed context');
    const { kvHeads, heads, headDim: d } = this.geom;
    if (this.sketches) {
      const out: RangeChoice = { keys: [], dropped: null };
      for (let g = 0; g < kvHeads; g++) this.keysByScore(qHost, span, layer * kvHeads + g, g, out);
      return out;
    }
    const lists: Int32Array[] = [];
    const live = span.pos + span.count - this.n;
    let dropped: DroppedPartial | null = null;
    for (let g = 0; g < kvHeads; g++) {
      const ti = layer * kvHeads + g;
      const t = this.tables[ti];
      const { kept, rowsRead, probs, lse } = this.chosen(ti, qHost, span.row, span.count, g, live);
      let keys = t.alwaysKeys;
      for (const c of kept) keys += t.starts[c + 1] - t.starts[c];
      lists.push(mergeRanges(t, kept, this.n, span.pos + span.count));
      if (this.mode.approximate !== false && t.values && probs && lse && kept.length < t.k) {
        dropped ??= {
          out: new Float32Array(span.count * heads * d),
          lse: new Float32Array(span.count * heads).fill(Number.NEGATIVE_INFINITY),
        };
        droppedShare(this.backend, t, kept, probs, lse, span.count, heads / kvHeads, g, heads, d, dropped);
      }
      this.stats.keysAttended += keys;
      this.stats.fixedKeys += this.n;
      const rowBytes = d * (b16(this.backend) ? 2 : 4);
      this.stats.bytesTouched += keys * 2 * d * BYTES_PER_VALUE + rowsRead * rowBytes;
    }
    this.stats.fraction = this.stats.fixedKeys > 0 ? this.stats.keysAttended / this.stats.fixedKeys : 0;
    return { keys: lists, dropped };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.tables) freeCentroidTable(this.backend, t);
    this.native?.free();
  }
}

/**
 * The clusters of table t not kept, as one partial per (step row, query head of kv head g's group):
 * softmax over their logits (q·c·scale + log n_c: each centroid stands for its n_c keys) of their mean
 * values — the weights are the scoring's softmax p restricted to them (no exp on the host), their product
 * with the mean values on the device (one matmul, [rows, k] × values [d, k]ᵀ). probs: [count·group][k],
 * lse: [count·group] (row i·group + j = step row i, head g·group + j). Writes into `into` (out
 * [count][heads·d], lse [count][heads]).
 */
function droppedShare(
  b: Backend,
  t: CentroidTable,
  kept: readonly number[],
  probs: Float32Array,
  lse: Float32Array,
  count: number,
  group: number,
  g: number,
  heads: number,
  d: number,
  into: DroppedPartial,
): void {
  const { k } = t;
  const rows = count * group;
  const w = probs.slice();
  for (let r = 0; r < rows; r++) for (const c of kept) w[r * k + c] = 0;
  const z = new Float64Array(rows);
  for (let r = 0; r < rows; r++) for (let c = 0; c < k; c++) z[r] += w[r * k + c];
  const wt = b.upload({ dtype: 'f32', shape: [rows, k], data: w });
  const outT = b.matmul(wt, t.values!);
  const out = b.readNow(outT);
  b.free(wt);
  b.free(outT);
  for (let i = 0; i < count; i++)
    for (let j = 0; j < group; j++) {
      const r = i * group + j;
      if (!(z[r] > 0)) continue; // the dropped clusters' share underflows: nothing to add (lse −∞)
      const h = g * group + j;
      const oo = (i * heads + h) * d;
      for (let e = 0; e < d; e++) into.out[oo + e] = out[r * d + e] / z[r];
      into.lse[i * heads + h] = lse[r] + Math.log(z[r]);
    }
}

const b16 = (b: Backend) => b.caps.weightDTypes.includes('f16');

/**
 * The step's key ranges in one linear pass: the kept clusters' slot runs (ascending: clusters are
 * numbered in slot order) merged with the always-kept ranges (sorted), then the live tokens [n, end).
 */
function mergeRanges(t: CentroidTable, kept: readonly number[], n: number, end: number): Int32Array {
  const out: number[] = [];
  const push = (s: number, e: number) => {
    if (out.length > 0 && out[out.length - 1] >= s) out[out.length - 1] = Math.max(out[out.length - 1], e);
    else out.push(s, e);
  };
  let a = 0;
  for (const c of kept) {
    const s = t.slot[c];
    while (a < t.always.length && t.always[a] <= s) {
      push(t.always[a], t.always[a + 1]);
      a += 2;
    }
    push(s, s + t.starts[c + 1] - t.starts[c]);
  }
  for (; a < t.always.length; a += 2) push(t.always[a], t.always[a + 1]);
  push(n, end);
  return Int32Array.from(out);
}
