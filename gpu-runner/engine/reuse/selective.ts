// Selective recompute over an assembled cache whose chunk K/V came from artifacts.
//   blend (CacheBlend): every chunk token runs layers 0..checkLayer fresh; at the check layer tokens are
//     scored by Σ(k_fresh − k_cached)² over heads and dims, and only the top ⌈ratio·N⌉ continue through
//     the later layers, their fresh K/V scattered over the cached ones.
//   link (EPIC): the first k tokens of every chunk that does not start the sequence run all layers fresh.
// Recomputed tokens attend over the whole cache before them (cached and fresh K/V alike).
import type { Backend, Tensor } from '../backends/types.ts';
import type { SequenceKV } from '../kv-cache.ts';
import type { Model } from '../model.ts';
import { freeRows, positionRuns, rowSet, selectRows } from './layer-step.ts';

export interface ChunkPlacement {
  /** Cache slot of the chunk's first token. */
  offset: number;
  tokens: readonly number[];
}

/** Runs layers over `positions` (ascending) of kv; optional selection after `checkLayer`. */
async function recompute(
  model: Model,
  kv: SequenceKV,
  positions: number[],
  tokens: number[],
  select?: { checkLayer: number; keep(scores: Float64Array): number[] },
): Promise<{ perLayerRows: number[] }> {
  const b = model.backend;
  let rows = rowSet(b, kv, positions);
  let x: Tensor = model.embed(tokens);
  const perLayerRows: number[] = [];
  try {
    for (let l = 0; l < model.cfg.layers; l++) {
      if (rows.positions.length === 0) {
        perLayerRows.push(0);
        continue;
      }
      perLayerRows.push(rows.positions.length);
      const deviation = select && l === select.checkLayer ? new KeyDeviation(b, kv, l, rows.positions) : null;
      x = model.layer(l, x, rows, deviation ? { keys: (k) => deviation.snapshot(k) } : {});
      if (deviation && select) {
        const keep = select.keep(await deviation.scores());
        if (keep.length < rows.positions.length) {
          const next = selectRows(b, kv, rows, x, keep);
          b.free(x);
          freeRows(b, rows);
          rows = next.rows;
          x = next.x;
        }
      }
    }
  } finally {
    b.free(x);
    freeRows(b, rows);
  }
  const last = positions[positions.length - 1];
  if (last !== undefined) kv.length = Math.max(kv.length, last + 1);
  return { perLayerRows };
}

/**
 * CacheBlend's score: Σ over kv heads and dims of (k_fresh − k_cached)² per row. snapshot() copies the
 * fresh keys and the cached ones they are about to overwrite (device copies, ordered before the write);
 * scores() reads them back.
 */
class KeyDeviation {
  readonly #b: Backend;
  readonly #kv: SequenceKV;
  readonly #layer: number;
  readonly #positions: readonly number[];
  #fresh: Tensor | null = null;
  #cached: Tensor[] = []; // per run of contiguous positions: [run, kvHeads·headDim]

  constructor(b: Backend, kv: SequenceKV, layer: number, positions: readonly number[]) {
    this.#b = b;
    this.#kv = kv;
    this.#layer = layer;
    this.#positions = positions;
  }

  snapshot(k: Tensor): void {
    const b = this.#b;
    this.#fresh = b.sliceRows(k, 0, k.shape[0]);
    for (const [i, n] of positionRuns(this.#positions)) {
      const g = b.kvGather(this.#kv.cache, this.#layer, this.#positions[i], n);
      b.free(g.v);
      this.#cached.push(g.k);
    }
  }

  async scores(): Promise<Float64Array> {
    const b = this.#b;
    if (!this.#fresh) throw new Error('key deviation: no keys were seen');
    const f = await b.read(this.#fresh); // [rows, kvHeads·headDim]
    b.free(this.#fresh);
    const width = f.length / this.#positions.length;
    const out = new Float64Array(this.#positions.length);
    const runs = positionRuns(this.#positions);
    for (const [r, [i, n]] of runs.entries()) {
      const cached = await b.read(this.#cached[r]);
      b.free(this.#cached[r]);
      for (let row = i; row < i + n; row++) {
        let s = 0;
        for (let t = 0; t < width; t++) {
          const d = f[row * width + t] - cached[(row - i) * width + t];
          s += d * d;
        }
        out[row] = s;
      }
    }
    this.#cached = [];
    return out;
  }
}

/** Indices of the ⌈ratio·n⌉ largest scores, ascending (ties: earlier index first). */
export function topIndices(scores: Float64Array, ratio: number): number[] {
  const n = scores.length;
  const k = Math.min(n, Math.ceil(ratio * n - 1e-9));
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  return order.slice(0, k).sort((a, b) => a - b);
}

export interface SelectiveReport {
  /** Token rows computed at each layer. */
  perLayerRows: number[];
  /** Token-layers recomputed, divided by layers: tokens' worth of full recompute. */
  recomputedTokens: number;
}

function summarize(perLayerRows: number[]): SelectiveReport {
  const total = perLayerRows.reduce((a, b) => a + b, 0);
  return { perLayerRows, recomputedTokens: perLayerRows.length ? total / perLayerRows.length : 0 };
}

export async function blendChunks(
  model: Model,
  kv: SequenceKV,
  chunks: readonly ChunkPlacement[],
  opts: { ratio: number; checkLayer: number },
): Promise<SelectiveReport> {
  if (!(opts.ratio >= 0 && opts.ratio <= 1)) throw new Error(`blend ratio ${opts.ratio} outside [0, 1]`);
  const positions: number[] = [];
  const tokens: number[] = [];
  for (const c of chunks) {
    c.tokens.forEach((t, i) => {
      positions.push(c.offset + i);
      tokens.push(t);
    });
  }
  const checkLayer = Math.min(opts.checkLayer, model.cfg.layers - 1);
  const { perLayerRows } = await recompute(model, kv, positions, tokens, {
    checkLayer,
    keep: (scores) => topIndices(scores, opts.ratio),
  });
  return summarize(perLayerRows);
}

export async function linkChunks(
  model: Model,
  kv: SequenceKV,
  chunks: readonly ChunkPlacement[],
  opts: { linkTokens: number },
): Promise<SelectiveReport> {
  const positions: number[] = [];
  const tokens: number[] = [];
  for (const c of chunks) {
    if (c.offset === 0) continue; // the sequence's first block is exact as cached
    const k = Math.min(opts.linkTokens, c.tokens.length);
    for (let i = 0; i < k; i++) {
      positions.push(c.offset + i);
      tokens.push(c.tokens[i]);
    }
  }
  if (positions.length === 0) return summarize(new Array(model.cfg.layers).fill(0));
  const { perLayerRows } = await recompute(model, kv, positions, tokens);
  return summarize(perLayerRows);
}
