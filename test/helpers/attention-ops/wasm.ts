// Attention-kernel modes of the wasm backend that the Backend interface does not use, driven directly for
// the attention-ops suite (attention-ops-suite.ts): attention over gathered keys (mode 1) and over key
// ranges per query head (mode 2 without columns), each with its log-sum-exp so partial results merge
// exactly, the merge kernel, and k-means assignment (bench/_wasm-kmeans.ts).
// Shapes follow the Backend conventions: q/out [M, heads·headDim] rows of one span; lse [M, heads].
import { wasmKmeansAssign } from '../../../bench/_wasm-kmeans.ts';
import type { KVCache, SeqSpan, Tensor } from '../../../gpu-runner/engine/backends/types.ts';
import type { WasmBackend } from '../../../gpu-runner/engine/backends/wasm/index.ts';
import { allocTensor, uploadInts } from '../../../gpu-runner/engine/backends/wasm/tensors.ts';
import { attentionGeometry, flatHeadRanges, flatKeyLists } from './lists.ts';

/** A partial attention result: out is normalised over its keys; lse = log Σ exp(score) over them. */
export interface PartialAttention {
  out: Tensor;
  lse: Tensor;
}

export class WasmAttentionOps {
  readonly backend: WasmBackend;
  constructor(backend: WasmBackend) {
    this.backend = backend;
  }

  private get rt() {
    return this.backend.kernels.rt;
  }
  private result(m: number, heads: number, headDim: number) {
    const out = allocTensor(this.rt.mem, m * heads * headDim * 4);
    const lse = allocTensor(this.rt.mem, m * heads * 4);
    return {
      out,
      lse,
      wrap: () => ({
        out: this.backend.adopt(out, [m, heads * headDim]),
        lse: this.backend.adopt(lse, [m, heads]),
      }),
    };
  }
  private geometry(q: Tensor, cache: KVCache, heads: number) {
    const c = this.backend.cacheOf(cache);
    return { c, qt: this.backend.handleOf(q), ...attentionGeometry(q, c.spec, heads) };
  }

  /**
   * Attention of every row of q over an explicit set of key positions per kv head (no causal mask):
   * keys[g] lists positions of `layer` that kv head g's query group attends to. Rows with an empty set
   * get out = 0, lse = -inf.
   */
  gathered(
    q: Tensor,
    cache: KVCache,
    layer: number,
    keys: readonly Int32Array[],
    heads: number,
    scale: number,
  ): PartialAttention {
    const { m, c, kvHeads, headDim, capacity, qt } = this.geometry(q, cache, heads);
    const { flat, offs } = flatKeyLists(keys, kvHeads, capacity);
    const idx = uploadInts(this.rt.mem, flat);
    const off = uploadInts(this.rt.mem, offs);
    const r = this.result(m, heads, headDim);
    this.rt.attention({
      q: qt.off,
      ...c.layerArgs(layer),
      out: r.out.off,
      lse: r.lse.off,
      nq: m,
      heads,
      scale,
      qpos0: -1,
      nk: capacity,
      mode: 1,
      idx: idx.off,
      offs: off.off,
    });
    this.rt.mem.release(idx.off);
    this.rt.mem.release(off.off);
    return r.wrap();
  }

  /**
   * Causal attention of one span's rows (q rows span.row.., positions span.pos..) over key ranges:
   * ranges[h][b] = [s0, e0, s1, e1, ...], disjoint [start, end) ranges for query head h and query block
   * b (rows b·blockSize.. of the span). Keys past a row's own position are masked. out/lse are [count, …].
   */
  ranges(
    q: Tensor,
    span: SeqSpan,
    layer: number,
    ranges: readonly (readonly (readonly number[])[])[],
    blockSize: number,
    heads: number,
    scale: number,
  ): PartialAttention {
    const { c, headDim, capacity, qt } = this.geometry(q, span.cache, heads);
    const plan = flatHeadRanges(ranges, heads, span.count, blockSize, capacity);
    const idx = uploadInts(this.rt.mem, plan.ranges);
    const off = uploadInts(this.rt.mem, plan.rangeOffs);
    const r = this.result(span.count, heads, headDim);
    this.rt.attention({
      q: qt.off + span.row * heads * headDim * 4,
      ...c.layerArgs(layer),
      out: r.out.off,
      lse: r.lse.off,
      nq: span.count,
      heads,
      scale,
      qpos0: span.pos,
      nk: span.pos + span.count,
      mode: 2,
      idx: idx.off,
      offs: off.off,
      bq: blockSize,
    });
    this.rt.mem.release(idx.off);
    this.rt.mem.release(off.off);
    return r.wrap();
  }

  /** Exact combination of two partials over disjoint key sets (log-sum-exp weights). */
  merge(a: PartialAttention, b: PartialAttention, heads: number): PartialAttention {
    const [m, width] = a.out.shape;
    if (b.out.shape[0] !== m || b.out.shape[1] !== width)
      throw new Error('merge: partials of different shapes');
    const r = this.result(m, heads, width / heads);
    const h = (t: Tensor) => this.backend.handleOf(t).off;
    this.rt.attentionMerge(
      h(a.out),
      h(a.lse),
      h(b.out),
      h(b.lse),
      r.out.off,
      r.lse.off,
      m,
      heads,
      width / heads,
    );
    return r.wrap();
  }

  /** k-means assignment: assign[i] = argmin_c ‖x_i − c‖², dist[i] that distance. */
  kmeansAssign(points: Tensor, centroids: Tensor): { assign: Tensor; dist: Tensor } {
    return wasmKmeansAssign(this.backend, points, centroids);
  }
}
