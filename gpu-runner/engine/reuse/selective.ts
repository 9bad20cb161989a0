// Selective recompute over an assembled cache whose chunk K/V came from artifacts.
//   blend (CacheBlend): every chunk token runs layers 0..checkLayer fresh; at the check layer tokens are
//     scored by Σ(k_fresh − k_cached)² over heads and dims, and only the top ⌈ratio·N⌉ continue through
//     the later layers, their fresh K/V scattered over the cached ones.
//   link (EPIC): the first k tokens of every chunk that does not start the sequence run all layers fresh.
// Recomputed tokens attend over the whole cache before them (cached and fresh K/V alike).
import type { Tensor } from '../backends/types.ts';
import type { SequenceKV } from '../kv-cache.ts';
import type { LayerStepper } from './layer-step.ts';

export interface ChunkPlacement {
  /** Cache slot of the chunk's first token. */
  offset: number;
  tokens: readonly number[];
}

/** Runs layers over `positions` (ascending) of kv; optional selection after `checkLayer`. */
async function recompute(
  stepper: LayerStepper,
  kv: SequenceKV,
  positions: number[],
  tokens: number[],
  select?: { checkLayer: number; keep(scores: Float64Array): number[] },
): Promise<{ perLayerRows: number[] }> {
  const b = stepper.backend;
  const layers = stepper.model.cfg.layers;
  let rows = stepper.rows(kv, positions);
  let x: Tensor = stepper.embed(tokens);
  const perLayerRows: number[] = [];
  try {
    for (let l = 0; l < layers; l++) {
      if (rows.positions.length === 0) {
        perLayerRows.push(0);
        continue;
      }
      perLayerRows.push(rows.positions.length);
      const scored: { s?: Float64Array } = {};
      const onKeys =
        select && l === select.checkLayer
          ? async (k: Tensor) => {
              scored.s = await keyDeviation(stepper, kv, l, rows.positions, k);
            }
          : undefined;
      x = await stepper.layer(l, x, rows, onKeys);
      if (scored.s && select) {
        const keep = select.keep(scored.s);
        if (keep.length < rows.positions.length) {
          const next = stepper.select(kv, rows, x, keep);
          b.free(x);
          stepper.freeRows(rows);
          rows = next.rows;
          x = next.x;
        }
      }
    }
  } finally {
    b.free(x);
    stepper.freeRows(rows);
  }
  const last = positions[positions.length - 1];
  if (last !== undefined) kv.length = Math.max(kv.length, last + 1);
  return { perLayerRows };
}

/** Σ over kv heads and dims of (k_fresh − k_cached)² per row, before the fresh keys are written. */
async function keyDeviation(
  stepper: LayerStepper,
  kv: SequenceKV,
  layer: number,
  positions: readonly number[],
  fresh: Tensor,
): Promise<Float64Array> {
  const b = stepper.backend;
  const f = await b.read(fresh); // [rows, kvHeads·headDim]
  const width = f.length / positions.length;
  const out = new Float64Array(positions.length);
  // cached keys come in contiguous runs (a chunk's tokens are contiguous)
  let i = 0;
  while (i < positions.length) {
    let j = i + 1;
    while (j < positions.length && positions[j] === positions[j - 1] + 1) j++;
    const { k, v } = b.kvGather(kv.cache, layer, positions[i], j - i);
    const cached = await b.read(k);
    b.free(k);
    b.free(v);
    for (let r = i; r < j; r++) {
      let s = 0;
      for (let t = 0; t < width; t++) {
        const d = f[r * width + t] - cached[(r - i) * width + t];
        s += d * d;
      }
      out[r] = s;
    }
    i = j;
  }
  return out;
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
  stepper: LayerStepper,
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
  const checkLayer = Math.min(opts.checkLayer, stepper.model.cfg.layers - 1);
  const { perLayerRows } = await recompute(stepper, kv, positions, tokens, {
    checkLayer,
    keep: (scores) => topIndices(scores, opts.ratio),
  });
  return summarize(perLayerRows);
}

export async function linkChunks(
  stepper: LayerStepper,
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
  if (positions.length === 0) return summarize(new Array(stepper.model.cfg.layers).fill(0));
  const { perLayerRows } = await recompute(stepper, kv, positions, tokens);
  return summarize(perLayerRows);
}
