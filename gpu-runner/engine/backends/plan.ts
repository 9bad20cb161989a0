// Key selections for attention kernels, checked and flattened once (the checking layer does it for every
// backend): sparse prefill's plan (ranges[g][b] and columns[g][b] per kv head g and query block b) and
// squeezed attention's range lists (one block per span). Kernels get the flat arrays.
import { BackendArgumentError } from '../errors.ts';

/**
 * A selection per (kv head g, query block b) — unit u = g·blocks + b. Ranges of unit u are the pairs
 * rangeOffs[u] .. rangeOffs[u + 1] of `ranges` ([start, end) at 2i, 2i + 1); its columns are
 * cols[colOffs[u] .. colOffs[u + 1]]. Every range lies in [0, limit), every column below limit.
 */
export interface FlatPlan {
  kvHeads: number;
  blocks: number;
  blockSize: number;
  rangeOffs: Int32Array; // [units + 1], in pairs
  ranges: Int32Array; // [pairs·2]
  colOffs: Int32Array; // [units + 1]
  cols: Int32Array;
  /** Σ over units of the keys their ranges cover */
  rangeKeys: number;
}

/**
 * Checks and flattens ranges[g][b] (flat [start, end) pairs) and columns[g][b] (positions; a missing
 * list is empty) for `kvHeads` kv heads and `blocks` query blocks; every position must be below `limit`.
 */
export function flattenPlan(
  op: string,
  ranges: readonly (readonly ArrayLike<number>[])[],
  columns: readonly (readonly (ArrayLike<number> | undefined)[] | undefined)[] | null,
  blockSize: number,
  kvHeads: number,
  blocks: number,
  limit: number,
): FlatPlan {
  const fail = (problem: string) => new BackendArgumentError(op, problem);
  if (!Number.isInteger(blockSize) || blockSize < 1) throw fail(`block size ${blockSize}`);
  if (ranges.length !== kvHeads || ranges.some((g) => g.length !== blocks))
    throw fail(`plan must be [${kvHeads} kv heads][${blocks} query blocks]`);
  const units = kvHeads * blocks;
  const rangeOffs = new Int32Array(units + 1);
  const colOffs = new Int32Array(units + 1);
  for (let g = 0; g < kvHeads; g++)
    for (let b = 0; b < blocks; b++) {
      const u = g * blocks + b;
      const rs = ranges[g][b];
      if (rs.length % 2 !== 0) throw fail('a range list of odd length');
      rangeOffs[u + 1] = rangeOffs[u] + rs.length / 2;
      colOffs[u + 1] = colOffs[u] + (columns?.[g]?.[b]?.length ?? 0);
    }
  const flat = new Int32Array(rangeOffs[units] * 2);
  const cols = new Int32Array(colOffs[units]);
  let rangeKeys = 0;
  for (let g = 0; g < kvHeads; g++)
    for (let b = 0; b < blocks; b++) {
      const u = g * blocks + b;
      const rs = ranges[g][b];
      for (let i = 0; i < rs.length; i += 2) {
        const s = rs[i];
        const e = rs[i + 1];
        if (!(s >= 0 && e <= limit && s <= e)) throw fail(`bad range [${s}, ${e})`);
        flat[rangeOffs[u] * 2 + i] = s;
        flat[rangeOffs[u] * 2 + i + 1] = e;
        rangeKeys += e - s;
      }
      const cs = columns?.[g]?.[b];
      if (!cs) continue;
      for (let i = 0; i < cs.length; i++) {
        if (!(cs[i] >= 0 && cs[i] < limit)) throw fail(`column ${cs[i]} outside the span`);
        cols[colOffs[u] + i] = cs[i];
      }
    }
  return { kvHeads, blocks, blockSize, rangeOffs, ranges: flat, colOffs, cols, rangeKeys };
}

/** Range lists per kv head for one span of `count` rows (attentionRanges): a one-block plan. */
export function flattenRanges(
  op: string,
  lists: readonly ArrayLike<number>[],
  kvHeads: number,
  count: number,
  limit: number,
): FlatPlan {
  if (lists.length !== kvHeads)
    throw new BackendArgumentError(op, `${lists.length} lists for ${kvHeads} kv heads`);
  return flattenPlan(
    op,
    lists.map((l) => [l]),
    null,
    Math.max(1, count),
    kvHeads,
    1,
    limit,
  );
}
