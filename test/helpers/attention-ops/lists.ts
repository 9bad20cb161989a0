// The key selections the attention-ops helpers hand to kernel modes the Backend interface does not use,
// checked and flattened once for both (wasm.ts, webgpu.ts): gathered positions per kv head, and ranges
// per query head and query block (the backends' flattenPlan with one selection per query head).
import { type FlatPlan, flattenPlan } from '../../../gpu-runner/engine/backends/plan.ts';
import type { KVCacheSpec, Tensor } from '../../../gpu-runner/engine/backends/types.ts';

/** q: [m, heads·headDim] against a cache's geometry. */
export function attentionGeometry(q: Tensor, spec: KVCacheSpec, heads: number) {
  if (q.shape.length !== 2) throw new Error(`attention: expected a 2-D q, got [${q.shape}]`);
  const [m, width] = q.shape;
  const { kvHeads, headDim, capacity } = spec;
  if (width !== heads * headDim) throw new Error(`attention: q [${q.shape}] for ${heads}×${headDim}`);
  return { m, kvHeads, headDim, capacity };
}

/** keys[g]: positions of kv head g, each within the cache → flat positions and offsets [kvHeads + 1]. */
export function flatKeyLists(
  keys: readonly Int32Array[],
  kvHeads: number,
  capacity: number,
): { flat: Int32Array; offs: Int32Array } {
  if (keys.length !== kvHeads)
    throw new Error(`gathered attention: ${keys.length} key lists for ${kvHeads} kv heads`);
  const offs = new Int32Array(kvHeads + 1);
  keys.forEach((k, g) => {
    for (const p of k)
      if (p < 0 || p >= capacity) throw new Error(`gathered attention: position ${p} outside the cache`);
    offs[g + 1] = offs[g] + k.length;
  });
  const flat = new Int32Array(offs[kvHeads]);
  keys.forEach((k, g) => {
    flat.set(k, offs[g]);
  });
  return { flat, offs };
}

/** ranges[h][b]: [start, end) pairs of query head h and query block b, within the cache. */
export function flatHeadRanges(
  ranges: readonly (readonly (readonly number[])[])[],
  heads: number,
  count: number,
  blockSize: number,
  capacity: number,
): FlatPlan {
  return flattenPlan(
    'sparse attention',
    ranges,
    null,
    blockSize,
    heads,
    Math.ceil(count / blockSize),
    capacity,
  );
}
