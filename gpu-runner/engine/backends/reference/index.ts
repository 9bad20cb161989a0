// The `reference` backend: plain TypeScript, eager, readable — the oracle the other backends are
// tested against. Every op runs to completion inside the call; read()/sync() only resolve.
import type {
  Backend,
  DType,
  HostTensor,
  KVBlock,
  KVCache,
  KVCacheSpec,
  SeqSpan,
  SparsePlan,
  Tensor,
} from '../types.ts';
import { sparseAttentionRef } from './sparse-attention.ts';
import {
  cache,
  checkRange,
  f32,
  i32,
  RefKVCache,
  RefTensor,
  ref,
  rows2,
  softmaxRow,
  weightRow,
} from './storage.ts';

export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  readonly weightDTypes: readonly DType[] = ['f32', 'f16'];

  upload(host: HostTensor): Tensor {
    const n = host.shape.reduce((a, b) => a * b, 1);
    if (host.data.length !== n)
      throw new Error(`upload: ${host.data.length} values for shape [${host.shape}]`);
    return new RefTensor([...host.shape], host.dtype, host.data.slice());
  }
  async read(t: Tensor): Promise<Float32Array> {
    return f32(t, 'read()').slice();
  }
  async readInt(t: Tensor): Promise<Int32Array> {
    return i32(t, 'readInt()').slice();
  }
  free(t: Tensor): void {
    ref(t).data = null;
  }
  async sync(): Promise<void> {}
  dispose(): void {}

  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    const [m, k] = rows2(x);
    const [n, kw] = rows2(w);
    if (k !== kw) throw new Error(`matmul: x [${x.shape}] · wᵀ [${w.shape}] inner dims differ`);
    const xs = f32(x, 'matmul x');
    const wr = ref(w);
    const b = bias ? f32(bias, 'matmul bias') : null;
    const out = new Float32Array(m * n);
    const tmp = new Float32Array(k);
    for (let j = 0; j < n; j++) {
      const row = weightRow(wr, j, k, tmp);
      for (let i = 0; i < m; i++) {
        let acc = 0;
        const xo = i * k;
        for (let t = 0; t < k; t++) acc += xs[xo + t] * row[t];
        out[i * n + j] = b ? acc + b[j] : acc;
      }
    }
    return new RefTensor([m, n], 'f32', out);
  }

  rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const [m, d] = rows2(x);
    const xs = f32(x, 'rmsnorm x');
    const ws = f32(w, 'rmsnorm weight');
    const out = new Float32Array(m * d);
    for (let i = 0; i < m; i++) {
      let ss = 0;
      for (let t = 0; t < d; t++) ss += xs[i * d + t] * xs[i * d + t];
      const inv = Math.fround(1 / Math.sqrt(Math.fround(ss / d) + eps));
      for (let t = 0; t < d; t++) out[i * d + t] = Math.fround(xs[i * d + t] * inv) * ws[t];
    }
    return new RefTensor([m, d], 'f32', out);
  }

  rope(x: Tensor, positions: Tensor, invFreq: Tensor, headDim: number): Tensor {
    const [m, width] = rows2(x);
    const xs = f32(x, 'rope x');
    const pos = i32(positions, 'rope positions');
    const freq = f32(invFreq, 'rope invFreq');
    const half = headDim / 2;
    if (width % headDim !== 0 || freq.length !== half || pos.length !== m) {
      throw new Error(
        `rope: x [${x.shape}], positions [${pos.length}], invFreq [${freq.length}], headDim ${headDim}`,
      );
    }
    const out = new Float32Array(m * width);
    const cos = new Float32Array(half);
    const sin = new Float32Array(half);
    for (let r = 0; r < m; r++) {
      for (let i = 0; i < half; i++) {
        const a = Math.fround(pos[r] * freq[i]);
        cos[i] = Math.cos(a);
        sin[i] = Math.sin(a);
      }
      for (let h = 0; h < width / headDim; h++) {
        const o = r * width + h * headDim;
        for (let i = 0; i < half; i++) {
          const a = xs[o + i];
          const b = xs[o + i + half];
          out[o + i] = a * cos[i] - b * sin[i];
          out[o + i + half] = b * cos[i] + a * sin[i];
        }
      }
    }
    return new RefTensor([m, width], 'f32', out);
  }

  swiglu(gate: Tensor, up: Tensor): Tensor {
    const g = f32(gate, 'swiglu gate');
    const u = f32(up, 'swiglu up');
    if (g.length !== u.length) throw new Error(`swiglu: [${gate.shape}] vs [${up.shape}]`);
    const out = new Float32Array(g.length);
    for (let i = 0; i < g.length; i++) out[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
    return new RefTensor([...gate.shape], 'f32', out);
  }

  softmax(x: Tensor): Tensor {
    const [m, n] = rows2(x);
    const xs = f32(x, 'softmax x');
    const out = new Float32Array(m * n);
    for (let i = 0; i < m; i++) softmaxRow(xs, i * n, n, out, i * n);
    return new RefTensor([m, n], 'f32', out);
  }

  add(a: Tensor, b: Tensor): Tensor {
    const as = f32(a, 'add a');
    const bs = f32(b, 'add b');
    if (as.length !== bs.length) throw new Error(`add: [${a.shape}] vs [${b.shape}]`);
    const out = new Float32Array(as.length);
    for (let i = 0; i < as.length; i++) out[i] = as[i] + bs[i];
    return new RefTensor([...a.shape], 'f32', out);
  }

  gather(table: Tensor, ids: Tensor): Tensor {
    const [v, d] = rows2(table);
    const idx = i32(ids, 'gather ids');
    const t = ref(table);
    const out = new Float32Array(idx.length * d);
    const tmp = new Float32Array(d);
    for (let i = 0; i < idx.length; i++) {
      if (idx[i] < 0 || idx[i] >= v) throw new Error(`gather: index ${idx[i]} outside [0, ${v})`);
      out.set(weightRow(t, idx[i], d, tmp), i * d);
    }
    return new RefTensor([idx.length, d], 'f32', out);
  }

  sliceRows(x: Tensor, start: number, count: number): Tensor {
    const [m, d] = rows2(x);
    if (start < 0 || count < 0 || start + count > m)
      throw new Error(`sliceRows: [${start}, +${count}) of ${m}`);
    const xs = f32(x, 'sliceRows x');
    return new RefTensor([count, d], 'f32', xs.slice(start * d, (start + count) * d));
  }

  argmax(x: Tensor): Tensor {
    const [m, n] = rows2(x);
    const xs = f32(x, 'argmax x');
    const out = new Int32Array(m);
    for (let i = 0; i < m; i++) {
      let best = 0;
      for (let j = 1; j < n; j++) if (xs[i * n + j] > xs[i * n + best]) best = j;
      out[i] = best;
    }
    return new RefTensor([m], 'i32', out);
  }

  createKVCache(spec: KVCacheSpec): KVCache {
    return new RefKVCache({ ...spec });
  }
  freeKVCache(c: KVCache): void {
    const rc = cache(c);
    rc.k = new Float32Array(0);
    rc.v = new Float32Array(0);
  }

  kvWrite(layer: number, k: Tensor, v: Tensor, spans: readonly SeqSpan[]): void {
    const ks = f32(k, 'kvWrite k');
    const vs = f32(v, 'kvWrite v');
    for (const s of spans) {
      const c = cache(s.cache);
      const { kvHeads, headDim, capacity } = c.spec;
      const width = kvHeads * headDim;
      if (k.shape[1] !== width) throw new Error(`kvWrite: k [${k.shape}] but cache rows are ${width} wide`);
      if (s.pos < 0 || s.pos + s.count > capacity) {
        throw new Error(
          `kvWrite: positions [${s.pos}, ${s.pos + s.count}) exceed cache capacity ${capacity}`,
        );
      }
      for (let i = 0; i < s.count; i++) {
        for (let h = 0; h < kvHeads; h++) {
          const src = (s.row + i) * width + h * headDim;
          const dst = c.offset(layer, h, s.pos + i);
          c.k.set(ks.subarray(src, src + headDim), dst);
          c.v.set(vs.subarray(src, src + headDim), dst);
        }
      }
    }
  }

  attention(q: Tensor, layer: number, spans: readonly SeqSpan[], heads: number, scale: number): Tensor {
    const [m, width] = rows2(q);
    const qs = f32(q, 'attention q');
    const out = new Float32Array(m * width);
    for (const s of spans) {
      const c = cache(s.cache);
      const { kvHeads, headDim } = c.spec;
      if (width !== heads * headDim) throw new Error(`attention: q [${q.shape}] for ${heads}×${headDim}`);
      const group = heads / kvHeads;
      const scores = new Float32Array(s.pos + s.count);
      for (let i = 0; i < s.count; i++) {
        const n = s.pos + i + 1; // causal: positions 0..pos+i
        for (let h = 0; h < heads; h++) {
          const kvh = Math.floor(h / group);
          const qo = (s.row + i) * width + h * headDim;
          const base = c.offset(layer, kvh, 0);
          for (let j = 0; j < n; j++) {
            let dot = 0;
            const ko = base + j * headDim;
            for (let t = 0; t < headDim; t++) dot += qs[qo + t] * c.k[ko + t];
            scores[j] = dot * scale;
          }
          softmaxRow(scores, 0, n, scores, 0);
          for (let j = 0; j < n; j++) {
            const p = scores[j];
            const vo = base + j * headDim;
            for (let t = 0; t < headDim; t++) out[qo + t] += p * c.v[vo + t];
          }
        }
      }
    }
    return new RefTensor([m, width], 'f32', out);
  }

  sparseAttention(
    q: Tensor,
    layer: number,
    span: SeqSpan,
    plan: SparsePlan,
    heads: number,
    scale: number,
  ): { out: Tensor; lse: Tensor } {
    return sparseAttentionRef(q, layer, span, plan, heads, scale);
  }

  attentionRanges(
    q: Tensor,
    layer: number,
    spans: readonly SeqSpan[],
    keys: readonly (readonly Int32Array[] | null)[],
    heads: number,
    scale: number,
  ): Tensor {
    const [m, width] = rows2(q);
    const qs = f32(q, 'attentionRanges q');
    const out = new Float32Array(m * width);
    spans.forEach((s, si) => {
      const c = cache(s.cache);
      const { kvHeads, headDim } = c.spec;
      if (width !== heads * headDim)
        throw new Error(`attentionRanges: q [${q.shape}] for ${heads}×${headDim}`);
      const group = heads / kvHeads;
      const all = Int32Array.of(0, s.pos + s.count);
      const lists = keys[si] ?? Array.from({ length: kvHeads }, () => all);
      if (lists.length !== kvHeads)
        throw new Error(`attentionRanges: ${lists.length} lists for ${kvHeads} kv heads`);
      for (let i = 0; i < s.count; i++) {
        const last = s.pos + i; // causal: positions ≤ last
        for (let h = 0; h < heads; h++) {
          const kvh = Math.floor(h / group);
          const r = lists[kvh];
          const pos: number[] = [];
          for (let t = 0; t + 1 < r.length; t += 2) {
            if (r[t] < 0 || r[t + 1] > c.spec.capacity || r[t] > r[t + 1])
              throw new Error(`attentionRanges: bad range [${r[t]}, ${r[t + 1]})`);
            for (let p = r[t]; p < Math.min(r[t + 1], last + 1); p++) pos.push(p);
          }
          if (pos.length === 0) continue;
          const qo = (s.row + i) * width + h * headDim;
          const base = c.offset(layer, kvh, 0);
          const scores = new Float32Array(pos.length);
          pos.forEach((p, j) => {
            let dot = 0;
            const ko = base + p * headDim;
            for (let t = 0; t < headDim; t++) dot += qs[qo + t] * c.k[ko + t];
            scores[j] = dot * scale;
          });
          softmaxRow(scores, 0, pos.length, scores, 0);
          pos.forEach((p, j) => {
            const vo = base + p * headDim;
            for (let t = 0; t < headDim; t++) out[qo + t] += scores[j] * c.v[vo + t];
          });
        }
      }
    });
    return new RefTensor([m, width], 'f32', out);
  }

  readNow(t: Tensor): Float32Array {
    return f32(t, 'readNow()').slice();
  }

  async kvRead(c: KVCache, layer: number, start: number, count: number): Promise<KVBlock> {
    const rc = cache(c);
    checkRange(rc, start, count);
    const { kvHeads, headDim } = rc.spec;
    const k = new Float32Array(kvHeads * count * headDim);
    const v = new Float32Array(kvHeads * count * headDim);
    for (let h = 0; h < kvHeads; h++) {
      const src = rc.offset(layer, h, start);
      k.set(rc.k.subarray(src, src + count * headDim), h * count * headDim);
      v.set(rc.v.subarray(src, src + count * headDim), h * count * headDim);
    }
    return { k, v };
  }

  kvLoad(c: KVCache, layer: number, start: number, block: KVBlock): void {
    const rc = cache(c);
    const { kvHeads, headDim } = rc.spec;
    const count = block.k.length / (kvHeads * headDim);
    if (!Number.isInteger(count) || block.v.length !== block.k.length)
      throw new Error('kvLoad: block size mismatch');
    checkRange(rc, start, count);
    for (let h = 0; h < kvHeads; h++) {
      const dst = rc.offset(layer, h, start);
      rc.k.set(block.k.subarray(h * count * headDim, (h + 1) * count * headDim), dst);
      rc.v.set(block.v.subarray(h * count * headDim, (h + 1) * count * headDim), dst);
    }
  }

  kvGather(c: KVCache, layer: number, start: number, count: number): { k: Tensor; v: Tensor } {
    const rc = cache(c);
    checkRange(rc, start, count);
    const { kvHeads, headDim } = rc.spec;
    const width = kvHeads * headDim;
    const k = new Float32Array(count * width);
    const v = new Float32Array(count * width);
    for (let p = 0; p < count; p++) {
      for (let h = 0; h < kvHeads; h++) {
        const src = rc.offset(layer, h, start + p);
        k.set(rc.k.subarray(src, src + headDim), p * width + h * headDim);
        v.set(rc.v.subarray(src, src + headDim), p * width + h * headDim);
      }
    }
    return { k: new RefTensor([count, width], 'f32', k), v: new RefTensor([count, width], 'f32', v) };
  }
}

export function createReferenceBackend(): Backend {
  return new ReferenceBackend();
}
