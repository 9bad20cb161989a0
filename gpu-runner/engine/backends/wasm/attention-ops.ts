// Device ops of the wasm backend beyond the Backend interface, for squeezed attention (4.2), sparse
// prefill (4.3) and the offline k-means: attention over gathered keys and over key ranges, each with
// its log-sum-exp so partial results merge exactly, the merge itself, and k-means assignment.
// Shapes follow the Backend conventions: q/out [M, heads·headDim] rows of one span; lse [M, heads].
import type { KVCache, SeqSpan, Tensor } from '../types.ts';
import type { WasmBackend } from './backend.ts';
import { allocTensor, asCache, asTensor, rows2, type WasmTensor } from './tensors.ts';

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

  private upload(data: Int32Array): WasmTensor {
    return asTensor(this.backend.upload({ dtype: 'i32', shape: [data.length], data }), 'index list');
  }
  private result(m: number, heads: number, headDim: number): { out: WasmTensor; lse: WasmTensor } {
    const mem = this.backend.rt.mem;
    return { out: allocTensor(mem, [m, heads * headDim], 'f32'), lse: allocTensor(mem, [m, heads], 'f32') };
  }
  private geometry(q: Tensor, cache: KVCache, heads: number) {
    const [m, width] = rows2(q, 'attention');
    const c = asCache(cache);
    const { kvHeads, headDim, capacity } = c.spec;
    if (width !== heads * headDim) throw new Error(`attention: q [${q.shape}] for ${heads}×${headDim}`);
    return { m, c, kvHeads, headDim, capacity, qt: asTensor(q, 'attention q', 'f32') };
  }

  /**
   * Attention of every row of q over an explicit set of key positions per kv head (no causal mask):
   * keys[g] lists positions of `layer` that kv head g's query group attends to (squeezed attention's
   * selected fixed-context keys). Rows with an empty set get out = 0, lse = -inf.
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
    const idx = this.upload(flat);
    const off = this.upload(offs);
    const r = this.result(m, heads, headDim);
    this.backend.rt.attention({
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
    this.backend.free(idx);
    this.backend.free(off);
    return r;
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
    const nQB = Math.ceil(span.count / blockSize);
    if (ranges.length !== heads || ranges.some((h) => h.length !== nQB))
      throw new Error(`sparse attention: ranges must be [${heads} heads][${nQB} query blocks]`);
    const offs = new Int32Array(heads * nQB + 1);
    const flat: number[] = [];
    for (let h = 0; h < heads; h++)
      for (let b = 0; b < nQB; b++) {
        const rs = ranges[h][b];
        for (let i = 0; i + 1 < rs.length; i += 2) {
          if (rs[i] < 0 || rs[i + 1] > capacity || rs[i] > rs[i + 1])
            throw new Error(`sparse attention: bad range [${rs[i]}, ${rs[i + 1]})`);
          flat.push(rs[i], rs[i + 1]);
        }
        offs[h * nQB + b + 1] = flat.length / 2;
      }
    const idx = this.upload(Int32Array.from(flat));
    const off = this.upload(offs);
    const r = this.result(span.count, heads, headDim);
    this.backend.rt.attention({
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
    this.backend.free(idx);
    this.backend.free(off);
    return r;
  }

  /** Exact combination of two partials over disjoint key sets (log-sum-exp weights). */
  merge(a: PartialAttention, b: PartialAttention, heads: number): PartialAttention {
    const [m, width] = rows2(a.out, 'merge');
    if (b.out.shape[0] !== m || b.out.shape[1] !== width)
      throw new Error('merge: partials of different shapes');
    const r = this.result(m, heads, width / heads);
    this.backend.rt.attentionMerge(
      asTensor(a.out, 'merge a.out', 'f32').off,
      asTensor(a.lse, 'merge a.lse', 'f32').off,
      asTensor(b.out, 'merge b.out', 'f32').off,
      asTensor(b.lse, 'merge b.lse', 'f32').off,
      r.out.off,
      r.lse.off,
      m,
      heads,
      width / heads,
    );
    return r;
  }

  /** k-means assignment: assign[i] = argmin_c ‖x_i − c‖², dist[i] that distance. points [n, d], centroids [c, d]. */
  kmeansAssign(points: Tensor, centroids: Tensor): { assign: Tensor; dist: Tensor } {
    const [n, d] = rows2(points, 'kmeansAssign');
    const [k, dc] = rows2(centroids, 'kmeansAssign');
    if (d !== dc) throw new Error(`kmeansAssign: points [${points.shape}] vs centroids [${centroids.shape}]`);
    const pt = asTensor(points, 'kmeansAssign points', 'f32');
    const ct = asTensor(centroids, 'kmeansAssign centroids', 'f32');
    const f = this.backend.rt.mem.f32;
    const cnorm = new Float32Array(k);
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let e = 0; e < d; e++) s += f[(ct.off >> 2) + j * d + e] ** 2;
      cnorm[j] = s;
    }
    const cn = asTensor(this.backend.upload({ dtype: 'f32', shape: [k], data: cnorm }), 'cnorm');
    const mem = this.backend.rt.mem;
    const assign = allocTensor(mem, [n], 'i32');
    const dist = allocTensor(mem, [n], 'f32');
    this.backend.rt.kmeansAssign(pt.off, ct.off, cn.off, assign.off, dist.off, n, d, k);
    this.backend.free(cn);
    return { assign, dist };
  }
}
