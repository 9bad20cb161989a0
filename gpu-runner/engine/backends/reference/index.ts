// The `reference` backend: plain TypeScript, eager, readable — the oracle the other backends are
// tested against. Every kernel runs to completion inside the call; read()/sync() only resolve. A tensor's
// handle is its typed array. Arguments arrive checked by the checking layer (../checked.ts).
import { CheckedBackend } from '../checked.ts';
import type { DType, HostTensor } from '../dtypes.ts';
import type { AttentionCall, KernelSpan, Kernels } from '../kernels.ts';
import type { FlatPlan } from '../plan.ts';
import type { KVBlock, KVCacheSpec } from '../types.ts';
import { attentionRef, sparseAttentionRef } from './attention.ts';
import { RefKVCache, type Storage, softmaxRow, weightRow } from './storage.ts';

const f32 = (t: Storage) => t as Float32Array;
type Call = AttentionCall<Storage, RefKVCache>;

export class ReferenceKernels implements Kernels<Storage, RefKVCache> {
  readonly name = 'reference';
  /** block weights are dequantized a row at a time: the exact product with the stored weights */
  readonly weightDTypes: readonly DType[] = ['f32', 'f16', 'q8_0', 'q4_0'];
  readonly kvDType = 'f32' as const;

  upload(host: HostTensor): Storage {
    return host.data.slice();
  }
  async read(t: Storage): Promise<Float32Array> {
    return f32(t).slice();
  }
  async readInt(t: Storage): Promise<Int32Array> {
    return (t as Int32Array).slice();
  }
  readNow(t: Storage): Float32Array {
    return f32(t).slice();
  }
  free(): void {}
  async sync(): Promise<void> {}
  dispose(): void {}

  matmul(
    x: Storage,
    w: Storage,
    wDType: DType,
    bias: Storage | null,
    m: number,
    n: number,
    k: number,
  ): Storage {
    const xs = f32(x);
    const b = bias ? f32(bias) : null;
    const out = new Float32Array(m * n);
    const tmp = new Float32Array(k);
    for (let j = 0; j < n; j++) {
      const row = weightRow(w, wDType, j, k, tmp);
      for (let i = 0; i < m; i++) {
        let acc = 0;
        const xo = i * k;
        for (let t = 0; t < k; t++) acc += xs[xo + t] * row[t];
        out[i * n + j] = b ? acc + b[j] : acc;
      }
    }
    return out;
  }

  rmsnorm(x: Storage, w: Storage, eps: number, m: number, d: number): Storage {
    const xs = f32(x);
    const ws = f32(w);
    const out = new Float32Array(m * d);
    for (let i = 0; i < m; i++) {
      let ss = 0;
      for (let t = 0; t < d; t++) ss += xs[i * d + t] * xs[i * d + t];
      const inv = Math.fround(1 / Math.sqrt(Math.fround(ss / d) + eps));
      for (let t = 0; t < d; t++) out[i * d + t] = Math.fround(xs[i * d + t] * inv) * ws[t];
    }
    return out;
  }

  rope(x: Storage, positions: Storage, invFreq: Storage, m: number, width: number, headDim: number): Storage {
    const xs = f32(x);
    const pos = positions as Int32Array;
    const freq = f32(invFreq);
    const half = headDim / 2;
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
    return out;
  }

  swiglu(gate: Storage, up: Storage, size: number): Storage {
    const g = f32(gate);
    const u = f32(up);
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
    return out;
  }

  softmax(x: Storage, m: number, n: number): Storage {
    const out = new Float32Array(m * n);
    for (let i = 0; i < m; i++) softmaxRow(f32(x), i * n, n, out, i * n);
    return out;
  }

  add(a: Storage, b: Storage, size: number): Storage {
    const as = f32(a);
    const bs = f32(b);
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = as[i] + bs[i];
    return out;
  }

  gather(table: Storage, tableDType: DType, ids: Storage, m: number, d: number): Storage {
    const idx = ids as Int32Array;
    const out = new Float32Array(m * d);
    const tmp = new Float32Array(d);
    for (let i = 0; i < m; i++) out.set(weightRow(table, tableDType, idx[i], d, tmp), i * d);
    return out;
  }

  sliceRows(x: Storage, start: number, count: number, d: number): Storage {
    return f32(x).slice(start * d, (start + count) * d);
  }

  argmax(x: Storage, m: number, n: number): Storage {
    const xs = f32(x);
    const out = new Int32Array(m);
    for (let i = 0; i < m; i++) {
      let best = 0;
      for (let j = 1; j < n; j++) if (xs[i * n + j] > xs[i * n + best]) best = j;
      out[i] = best;
    }
    return out;
  }

  createKVCache(spec: KVCacheSpec): RefKVCache {
    return new RefKVCache(spec);
  }
  freeKVCache(c: RefKVCache): void {
    c.k = new Float32Array(0);
    c.v = new Float32Array(0);
  }

  kvWrite(layer: number, k: Storage, v: Storage, spans: readonly KernelSpan<RefKVCache>[]): void {
    const ks = f32(k);
    const vs = f32(v);
    for (const s of spans) {
      const c = s.cache;
      const { kvHeads, headDim } = s.spec;
      const width = kvHeads * headDim;
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

  attention(call: Call): Storage {
    return attentionRef(call, null);
  }
  sparseAttention(call: Call, plan: FlatPlan): { out: Storage; lse: Storage } {
    return sparseAttentionRef(call, plan);
  }
  attentionRanges(call: Call, keys: readonly (FlatPlan | null)[]): Storage {
    return attentionRef(call, keys);
  }

  async kvRead(
    c: RefKVCache,
    spec: KVCacheSpec,
    layer: number,
    start: number,
    count: number,
  ): Promise<KVBlock> {
    const { kvHeads, headDim } = spec;
    const k = new Float32Array(kvHeads * count * headDim);
    const v = new Float32Array(kvHeads * count * headDim);
    for (let h = 0; h < kvHeads; h++) {
      const src = c.offset(layer, h, start);
      k.set(c.k.subarray(src, src + count * headDim), h * count * headDim);
      v.set(c.v.subarray(src, src + count * headDim), h * count * headDim);
    }
    return { k, v };
  }

  kvLoad(
    c: RefKVCache,
    spec: KVCacheSpec,
    layer: number,
    start: number,
    count: number,
    block: KVBlock,
  ): void {
    const { kvHeads, headDim } = spec;
    for (let h = 0; h < kvHeads; h++) {
      const dst = c.offset(layer, h, start);
      c.k.set(block.k.subarray(h * count * headDim, (h + 1) * count * headDim), dst);
      c.v.set(block.v.subarray(h * count * headDim, (h + 1) * count * headDim), dst);
    }
  }

  kvGather(c: RefKVCache, spec: KVCacheSpec, layer: number, start: number, count: number) {
    const { kvHeads, headDim } = spec;
    const width = kvHeads * headDim;
    const k = new Float32Array(count * width);
    const v = new Float32Array(count * width);
    for (let p = 0; p < count; p++) {
      for (let h = 0; h < kvHeads; h++) {
        const src = c.offset(layer, h, start + p);
        k.set(c.k.subarray(src, src + headDim), p * width + h * headDim);
        v.set(c.v.subarray(src, src + headDim), p * width + h * headDim);
      }
    }
    return { k: k as Storage, v: v as Storage };
  }
}

export type ReferenceBackend = CheckedBackend<ReferenceKernels>;

export function createReferenceBackend(): ReferenceBackend {
  return new CheckedBackend(new ReferenceKernels());
}
