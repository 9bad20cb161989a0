// Attention-kernel modes of the webgpu backend that the Backend interface does not use, driven directly
// for the attention-ops suite (attention-ops-suite.ts) — the same methods as WasmAttentionOps: attention
// over gathered keys (mode 1, split over workgroups like decode) and over key ranges per query head
// (mode 2), each with its log-sum-exp, the merge, and k-means assignment.
// Shapes: q/out [M, heads·headDim] rows of one span; lse [M, heads] f32 (-inf for an empty key set).
import type { KVCache, SeqSpan, Tensor } from '../../../gpu-runner/engine/backends/types.ts';
import { partialLead } from '../../../gpu-runner/engine/backends/webgpu/attend.ts';
import type { WebGPUBackend } from '../../../gpu-runner/engine/backends/webgpu/index.ts';
import * as at from '../../../gpu-runner/engine/backends/webgpu/kernels/attention.ts';
import { grid1d, gridRows } from '../../../gpu-runner/engine/backends/webgpu/kernels/common.ts';
import type { Live } from '../../../gpu-runner/engine/backends/webgpu/memory.ts';
import { attentionGeometry, flatHeadRanges, flatKeyLists } from './lists.ts';
import type { PartialAttention } from './wasm.ts';

export class WebGPUAttentionOps {
  readonly backend: WebGPUBackend;
  constructor(backend: WebGPUBackend) {
    this.backend = backend;
  }

  private get d() {
    return this.backend.kernels.dev;
  }
  private tensor(t: Tensor, what: string): Live {
    if (t.dtype !== 'f32') throw new Error(`${what} must be f32`);
    return this.d.live(this.backend.handleOf(t), what);
  }
  private geometry(q: Tensor, cache: KVCache, heads: number) {
    const c = this.d.liveCache(this.backend.cacheOf(cache));
    return { c, qt: this.tensor(q, 'attention q'), ...attentionGeometry(q, c.spec, heads) };
  }
  private bind(t: Live) {
    return this.d.bind(t);
  }
  private wrap(out: Live, lse: Live, m: number, width: number, heads: number): PartialAttention {
    return { out: this.backend.adopt(out, [m, width]), lse: this.backend.adopt(lse, [m, heads]) };
  }

  /**
   * Attention of every row of q over an explicit set of key positions per kv head (no causal mask):
   * keys[g] lists positions of `layer` that kv head g's query group attends to. Rows with an empty set
   * get out = 0, lse = -inf. Long selections are split over workgroups and combined by log-sum-exp.
   */
  gathered(
    q: Tensor,
    cache: KVCache,
    layer: number,
    keys: readonly Int32Array[],
    heads: number,
    scale: number,
  ): PartialAttention {
    const b = this.d;
    const { m, c, kvHeads, headDim, capacity, qt } = this.geometry(q, cache, heads);
    const lists = flatKeyLists(keys, kvHeads, capacity);
    const flat = new Int32Array(Math.max(1, lists.flat.length));
    flat.set(lists.flat);
    const offs = lists.offs;
    const longest = Math.max(0, ...keys.map((k) => k.length));
    const splits =
      m * heads >= 256 ? 1 : Math.max(1, Math.min(b.maxSplits, Math.ceil(longest / b.keysPerSplit)));
    const chunk = Math.max(64, Math.ceil(longest / splits / 64) * 64);
    const used = Math.max(1, Math.ceil(longest / chunk));
    const idx = b.uploadIndex(flat);
    const off = b.uploadIndex(offs);
    const out = b.alloc([m, heads * headDim], 'f32');
    const lse = b.alloc([m, heads], 'f32');
    const po = used === 1 ? out : b.alloc([m * heads * used, headDim], 'f32');
    const pl = used === 1 ? lse : b.alloc([m * heads * used], 'f32');
    b.rec.dispatch(
      at.attentionPartial(1, c.dtype),
      [...partialLead(c, layer, m, heads, scale, 0, 0), chunk, used, 0, 1, 1, 1, 0],
      [
        this.bind(qt),
        { buffer: c.k },
        { buffer: c.v },
        this.bind(idx),
        this.bind(off),
        this.bind(po),
        this.bind(pl),
      ],
      [used, heads, m],
    );
    if (used > 1) {
      b.rec.dispatch(
        at.attentionCombineLse,
        [m, heads, headDim, used, 0],
        [this.bind(po), this.bind(pl), this.bind(out), this.bind(lse)],
        gridRows(m * heads),
      );
      b.free(po);
      b.free(pl);
    }
    b.free(idx);
    b.free(off);
    return this.wrap(out, lse, m, heads * headDim, heads);
  }

  /**
   * Causal attention of one span's rows over key ranges: ranges[h][b] = [s0, e0, s1, e1, ...], disjoint
   * [start, end) ranges for query head h and query block b (rows b·blockSize.. of the span). Keys past a
   * row's own position are masked. out/lse are [count, …].
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
    const b = this.d;
    const { c, headDim, capacity, qt } = this.geometry(q, span.cache, heads);
    const plan = flatHeadRanges(ranges, heads, span.count, blockSize, capacity);
    const nQB = plan.blocks;
    const idx = b.uploadIndex(plan.ranges.length > 0 ? plan.ranges : Int32Array.of(0));
    const off = b.uploadIndex(plan.rangeOffs);
    const out = b.alloc([span.count, heads * headDim], 'f32');
    const lse = b.alloc([span.count, heads], 'f32');
    const width = heads * headDim;
    b.rec.dispatch(
      at.attentionPartial(2, c.dtype),
      [
        ...partialLead(c, layer, span.count, heads, scale, span.row * width, span.pos),
        0,
        1,
        0,
        1,
        nQB,
        blockSize,
        0,
      ],
      [
        this.bind(qt),
        { buffer: c.k },
        { buffer: c.v },
        this.bind(idx),
        this.bind(off),
        this.bind(out),
        this.bind(lse),
      ],
      [1, heads, span.count],
    );
    b.free(idx);
    b.free(off);
    return this.wrap(out, lse, span.count, width, heads);
  }

  /** Exact combination of two partials over disjoint key sets (log-sum-exp weights). */
  merge(a: PartialAttention, bp: PartialAttention, heads: number): PartialAttention {
    const b = this.d;
    if (a.out.shape.length !== 2) throw new Error('merge: 2-D partials expected');
    const [m, width] = a.out.shape;
    if (bp.out.shape[0] !== m || bp.out.shape[1] !== width)
      throw new Error('merge: partials of different shapes');
    const out = b.alloc([m, width], 'f32');
    const lse = b.alloc([m, heads], 'f32');
    b.rec.dispatch(
      at.attentionMerge,
      [m, heads, width / heads],
      [
        this.bind(this.tensor(a.out, 'merge a.out')),
        this.bind(this.tensor(a.lse, 'merge a.lse')),
        this.bind(this.tensor(bp.out, 'merge b.out')),
        this.bind(this.tensor(bp.lse, 'merge b.lse')),
        this.bind(out),
        this.bind(lse),
      ],
      grid1d(m * width),
    );
    return this.wrap(out, lse, m, width, heads);
  }

  /** k-means assignment: assign[i] = argmin_c ‖x_i − c‖², dist[i] that distance. points [n, d], centroids [c, d]. */
  kmeansAssign(points: Tensor, centroids: Tensor): { assign: Tensor; dist: Tensor } {
    const b = this.d;
    if (points.shape.length !== 2 || centroids.shape.length !== 2)
      throw new Error('kmeansAssign: 2-D tensors expected');
    const [n, d] = points.shape;
    const [k, dc] = centroids.shape;
    if (d !== dc) throw new Error(`kmeansAssign: points [${points.shape}] vs centroids [${centroids.shape}]`);
    const pt = this.tensor(points, 'kmeansAssign points');
    const ct = this.tensor(centroids, 'kmeansAssign centroids');
    const assign = b.alloc([n], 'i32');
    const dist = b.alloc([n], 'f32');
    const cnorm = b.alloc([k], 'f32');
    b.rec.dispatch(at.rowNorms, [k, d], [this.bind(ct), this.bind(cnorm)], grid1d(k));
    b.rec.dispatch(
      at.kmeansAssign,
      [n, d, k],
      [this.bind(pt), this.bind(ct), this.bind(cnorm), this.bind(assign), this.bind(dist)],
      grid1d(n),
    );
    b.free(cnorm);
    return { assign: this.backend.adopt(assign, [n], 'i32'), dist: this.backend.adopt(dist, [n]) };
  }
}
