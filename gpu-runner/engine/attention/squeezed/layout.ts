// Cluster-major layout of a fixed context (DESIGN.md §4.2, for speed): attention over the fixed
// context does not depend on the order of its keys (RoPE is already applied), so each kv head's
// clustered keys can sit in the cache grouped by cluster — slot t holds position order[t], cluster c
// fills slots [starts[c], starts[c+1]) — and the window stays at [n − W, n). A selection is then a few
// runs of consecutive slots, which the key-range kernel (Backend.attentionRanges, GQA-grouped) reads
// almost as a stream; FixedContext (fixed-context.ts) scores the clusters and lists those runs.
import type { SqueezedIndex } from './types.ts';

/** One layer's fixed K or V [kv_head][n][d] rearranged cluster-major per kv head. */
export function toClusterMajor(ix: SqueezedIndex, layer: number, x: Float32Array): Float32Array {
  const { n, kvHeads, headDim: d } = ix;
  const out = new Float32Array(x.length);
  for (let g = 0; g < kvHeads; g++) {
    const { order } = ix.heads[layer * kvHeads + g];
    const base = g * n * d;
    for (let t = 0; t < order.length; t++)
      out.set(x.subarray(base + order[t] * d, base + (order[t] + 1) * d), base + t * d);
    out.set(x.subarray(base + order.length * d, base + n * d), base + order.length * d);
  }
  return out;
}
