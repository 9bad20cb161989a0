// Row sets for the reuse modes that recompute only some tokens (CacheBlend, EPIC): the caller drives
// Model.layer (the one decoder layer body) layer by layer and may change which rows continue between
// layers. Each row is one token at a given cache position; its Q/K/V are computed fresh, its K/V
// overwrite the cache at that position, and it attends causally over the cache (cached and fresh entries
// alike), so recomputing every row of every layer reproduces the full prefill.
import type { Backend, SeqSpan, Tensor } from '../backends/types.ts';
import type { SequenceKV } from '../kv-cache.ts';
import type { LayerRows } from '../model.ts';

/** Rows of one step: ascending cache positions of one sequence, grouped into contiguous spans. */
export interface RowSet extends LayerRows {
  positions: number[];
  spans: SeqSpan[];
  posT: Tensor; // i32 [rows]: RoPE positions (= cache slots)
}

/** Row set for `positions` (strictly ascending) of `kv`: contiguous runs become one span each. */
export function rowSet(b: Backend, kv: SequenceKV, positions: readonly number[]): RowSet {
  const spans: SeqSpan[] = [];
  positions.forEach((p, i) => {
    if (i > 0 && p <= positions[i - 1]) throw new Error('rows: positions must ascend');
    const last = spans[spans.length - 1];
    if (last && last.pos + last.count === p) last.count++;
    else spans.push({ cache: kv.cache, row: i, count: 1, pos: p });
  });
  const posT = b.upload({ dtype: 'i32', shape: [positions.length], data: Int32Array.from(positions) });
  return { positions: [...positions], spans, posT };
}

/** A subset of `rows` (indices into it, ascending) with the matching rows of `x` gathered. */
export function selectRows(
  b: Backend,
  kv: SequenceKV,
  rows: RowSet,
  x: Tensor,
  keep: readonly number[],
): { rows: RowSet; x: Tensor } {
  const idx = b.upload({ dtype: 'i32', shape: [keep.length], data: Int32Array.from(keep) });
  const picked = b.gather(x, idx);
  b.free(idx);
  return {
    rows: rowSet(
      b,
      kv,
      keep.map((i) => rows.positions[i]),
    ),
    x: picked,
  };
}

export function freeRows(b: Backend, rows: RowSet): void {
  b.free(rows.posT);
}

/** Contiguous runs of ascending positions: [index of the run's first row, its length]. */
export function positionRuns(positions: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  let i = 0;
  while (i < positions.length) {
    let j = i + 1;
    while (j < positions.length && positions[j] === positions[j - 1] + 1) j++;
    runs.push([i, j - i]);
    i = j;
  }
  return runs;
}
