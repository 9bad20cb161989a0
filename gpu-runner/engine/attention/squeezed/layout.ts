// Cluster-major layout of a fixed context (DESIGN.md §4.2, for speed): attention over the fixed
// context does not depend on the order of its keys (RoPE is already applied), so each kv head's
// clustered keys can sit in the cache grouped by cluster — slot t holds position order[t], cluster c
// fills slots [starts[c], starts[c+1]) — and the window stays at [n − W, n). A selection is then a few
// runs of consecutive slots, which the gathered-key kernel (GQA-grouped) reads almost as a stream, and
// the centroids stay resident on the device so scoring is one small matmul per kv head.
import type { Tensor } from '../../backends/types.ts';
import type { WasmAttentionOps } from '../../backends/wasm/attention-ops.ts';
import { asTensor } from '../../backends/wasm/tensors.ts';
import { chooseClusters, type SelectMode, type Selection } from './select.ts';
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

/** Selected slots in slot order: the kept clusters' slot runs, then the window [n − W, n); + offset. */
export function clusterSlots(
  ix: SqueezedIndex,
  layer: number,
  g: number,
  kept: readonly number[],
  offset = 0,
): Int32Array {
  const h = ix.heads[layer * ix.kvHeads + g];
  const ids = Int32Array.from(kept).sort();
  let total = ix.window;
  for (const c of ids) total += h.starts[c + 1] - h.starts[c];
  const out = new Int32Array(total);
  let at = 0;
  for (const c of ids) for (let t = h.starts[c]; t < h.starts[c + 1]; t++) out[at++] = t + offset;
  for (let t = ix.n - ix.window; t < ix.n; t++) out[at++] = t + offset;
  return out;
}

/** An index's centroids on the wasm device: [layer·kvHeads + g] → [k, d]. */
export class DeviceCentroids {
  readonly ix: SqueezedIndex;
  private readonly ops: WasmAttentionOps;
  readonly scale: number;
  // per head: centroids·scale [k, d] and log n_c [k], so softmax(q·cᵀ·scale + log n) = n_c·p̂_c
  private readonly tensors: ({ c: Tensor; logN: Tensor } | null)[];
  constructor(ops: WasmAttentionOps, ix: SqueezedIndex, scale: number) {
    this.ops = ops;
    this.ix = ix;
    this.scale = scale;
    const b = ops.backend;
    this.tensors = ix.heads.map((h) => {
      if (h.k === 0) return null;
      const logN = Float32Array.from({ length: h.k }, (_, c) => Math.log(h.starts[c + 1] - h.starts[c]));
      const c = h.centroids.map((x) => x * scale);
      return {
        c: b.upload({ dtype: 'f32', shape: [h.k, ix.headDim], data: c }),
        logN: b.upload({ dtype: 'f32', shape: [h.k], data: logN }),
      };
    });
  }

  /**
   * The selection (slots of the cluster-major layout) for one decode step of `layer`.
   * qHeads: [heads, d] on the device, the step's query (row h = query head h).
   */
  select(qHeads: Tensor, heads: number, layer: number, mode: SelectMode, offset = 0): Selection {
    const { ix } = this;
    const b = this.ops.backend;
    const group = heads / ix.kvHeads;
    if (qHeads.shape[0] !== heads)
      throw new Error('DeviceCentroids.select: one query row (a decode step) at a time');
    const keys: Int32Array[] = [];
    let centroidFloats = 0;
    for (let g = 0; g < ix.kvHeads; g++) {
      const h = ix.heads[layer * ix.kvHeads + g];
      const t = this.tensors[layer * ix.kvHeads + g];
      let kept: number[] = [];
      if (t) {
        const qg = b.sliceRows(qHeads, g * group, group);
        const logits = b.matmul(qg, t.c, t.logN); // [group, k] = q·cᵀ·scale + log n_c
        const mass = b.softmax(logits); // [group, k] = n_c·p̂_c per query head
        const off = asTensor(mass, 'cluster mass', 'f32').off >> 2;
        const m = b.rt.mem.f32.subarray(off, off + group * h.k); // the wasm heap is host memory
        const score = new Float32Array(h.k);
        for (let r = 0; r < group; r++) for (let c = 0; c < h.k; c++) score[c] += m[r * h.k + c];
        for (let c = 0; c < h.k; c++) score[c] /= group * (h.starts[c + 1] - h.starts[c]);
        kept = chooseClusters(h, score, ix.n, ix.window, mode);
        for (const x of [qg, logits, mass]) b.free(x);
        centroidFloats += h.k * ix.headDim;
      }
      keys.push(clusterSlots(ix, layer, g, kept, offset));
    }
    return { keys, fixedKeys: ix.n, centroidFloats };
  }

  dispose(): void {
    for (const t of this.tensors) if (t) for (const x of [t.c, t.logN]) this.ops.backend.free(x);
  }
}
