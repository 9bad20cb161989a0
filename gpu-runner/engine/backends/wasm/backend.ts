// The `wasm` backend: the Backend interface over WasmRuntime. Tensors and KV caches live in the
// runtime's shared memory; every op runs its kernel across the thread pool and returns when done, so
// read()/sync() only copy out. Pure data movement (slices, KV writes/reads) is done by the host on the
// same memory (memcpy speed).
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
import { attentionRangesWasm } from './ranges-attention.ts';
import { HALF_IEEE, HALF_PRESCALED, type RuntimeOptions, WasmRuntime } from './runtime.ts';
import { sparseAttentionWasm } from './sparse-attention.ts';
import {
  allocTensor,
  asCache,
  asTensor,
  prescaleHalves,
  rows2,
  spanAttentionArgs,
  WasmKVCache,
  type WasmTensor,
} from './tensors.ts';

export class WasmBackend implements Backend {
  readonly name = 'wasm';
  readonly weightDTypes: readonly DType[] = ['f32', 'f16'];
  readonly rt: WasmRuntime;
  private disposed = false;

  constructor(rt: WasmRuntime) {
    this.rt = rt;
  }

  get threads(): number {
    return this.rt.threads;
  }

  private tensor(t: Tensor, what: string, dtype?: DType): WasmTensor {
    return asTensor(t, what, dtype);
  }
  private cache(c: KVCache): WasmKVCache {
    return asCache(c);
  }
  private alloc(shape: readonly number[], dtype: DType): WasmTensor {
    return allocTensor(this.rt.mem, shape, dtype);
  }

  // --- memory -------------------------------------------------------------------------------------
  upload(host: HostTensor): Tensor {
    const n = host.shape.reduce((a, b) => a * b, 1);
    if (host.data.length !== n)
      throw new Error(`upload: ${host.data.length} values for shape [${host.shape}]`);
    const t = this.alloc(host.shape, host.dtype);
    const m = this.rt.mem;
    if (host.dtype === 'f32') m.f32.set(host.data, t.off >> 2);
    else if (host.dtype === 'i32') m.i32.set(host.data, t.off >> 2);
    else {
      // f16 is stored pre-scaled by 2^10 where it fits, so subnormal halves widen without denormals
      const scaled = prescaleHalves(host.data);
      m.u16.set(scaled ?? host.data, t.off >> 1);
      t.halfScale = scaled ? HALF_PRESCALED : HALF_IEEE;
    }
    return t;
  }
  async read(t: Tensor): Promise<Float32Array> {
    const w = this.tensor(t, 'read()', 'f32');
    return this.rt.mem.f32.slice(w.off >> 2, (w.off >> 2) + w.size);
  }
  async readInt(t: Tensor): Promise<Int32Array> {
    const w = this.tensor(t, 'readInt()', 'i32');
    return this.rt.mem.i32.slice(w.off >> 2, (w.off >> 2) + w.size);
  }
  free(t: Tensor): void {
    const w = this.tensor(t, 'free()');
    this.rt.mem.release(w.off);
    w.off = -1;
  }
  async sync(): Promise<void> {}
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    void this.rt.close();
  }

  // --- ops ----------------------------------------------------------------------------------------
  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    const [M, K] = rows2(x, 'matmul');
    const [N, Kw] = rows2(w, 'matmul');
    if (K !== Kw) throw new Error(`matmul: x [${x.shape}] · wᵀ [${w.shape}] inner dims differ`);
    const xt = this.tensor(x, 'matmul x', 'f32');
    const wt = this.tensor(w, 'matmul w');
    if (wt.dtype === 'i32') throw new Error('matmul: weights must be f32 or f16');
    const bt = bias ? this.tensor(bias, 'matmul bias', 'f32') : null;
    if (bt && bt.size !== N) throw new Error(`matmul: bias [${bias?.shape}] for N=${N}`);
    const y = this.alloc([M, N], 'f32');
    this.rt.matmul({
      x: xt.off,
      w: wt.off,
      bias: bt ? bt.off : 0,
      y: y.off,
      M,
      N,
      K,
      f16: wt.dtype === 'f16',
      f16Scale: wt.halfScale,
    });
    return y;
  }
  rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const [M, D] = rows2(x, 'rmsnorm');
    const xt = this.tensor(x, 'rmsnorm x', 'f32');
    const wt = this.tensor(w, 'rmsnorm weight', 'f32');
    if (wt.size !== D) throw new Error(`rmsnorm: weight [${w.shape}] for rows of ${D}`);
    const y = this.alloc([M, D], 'f32');
    this.rt.rmsnorm(xt.off, wt.off, y.off, M, D, eps);
    return y;
  }
  rope(x: Tensor, positions: Tensor, invFreq: Tensor, headDim: number): Tensor {
    const [M, width] = rows2(x, 'rope');
    const xt = this.tensor(x, 'rope x', 'f32');
    const pt = this.tensor(positions, 'rope positions', 'i32');
    const ft = this.tensor(invFreq, 'rope invFreq', 'f32');
    if (headDim % 2 !== 0 || width % headDim !== 0 || ft.size !== headDim / 2 || pt.size !== M) {
      throw new Error(
        `rope: x [${x.shape}], positions [${pt.size}], invFreq [${ft.size}], headDim ${headDim}`,
      );
    }
    const y = this.alloc([M, width], 'f32');
    this.rt.rope(xt.off, y.off, pt.off, ft.off, M, width, headDim);
    return y;
  }
  swiglu(gate: Tensor, up: Tensor): Tensor {
    const g = this.tensor(gate, 'swiglu gate', 'f32');
    const u = this.tensor(up, 'swiglu up', 'f32');
    if (g.size !== u.size) throw new Error(`swiglu: [${gate.shape}] vs [${up.shape}]`);
    const y = this.alloc(gate.shape, 'f32');
    this.rt.swiglu(g.off, u.off, y.off, g.size);
    return y;
  }
  softmax(x: Tensor): Tensor {
    const [M, N] = rows2(x, 'softmax');
    const xt = this.tensor(x, 'softmax x', 'f32');
    const y = this.alloc([M, N], 'f32');
    this.rt.softmax(xt.off, y.off, M, N);
    return y;
  }
  add(a: Tensor, b: Tensor): Tensor {
    const at = this.tensor(a, 'add a', 'f32');
    const bt = this.tensor(b, 'add b', 'f32');
    if (at.size !== bt.size) throw new Error(`add: [${a.shape}] vs [${b.shape}]`);
    const y = this.alloc(a.shape, 'f32');
    this.rt.add(at.off, bt.off, y.off, at.size);
    return y;
  }
  gather(table: Tensor, ids: Tensor): Tensor {
    const [V, D] = rows2(table, 'gather');
    const tt = this.tensor(table, 'gather table');
    if (tt.dtype === 'i32') throw new Error('gather: table must be f32 or f16');
    const it = this.tensor(ids, 'gather ids', 'i32');
    const idx = this.rt.mem.i32.subarray(it.off >> 2, (it.off >> 2) + it.size);
    for (const i of idx) if (i < 0 || i >= V) throw new Error(`gather: index ${i} outside [0, ${V})`);
    const y = this.alloc([it.size, D], 'f32');
    this.rt.gather(tt.off, it.off, y.off, it.size, D, tt.dtype === 'f16', tt.halfScale);
    return y;
  }
  sliceRows(x: Tensor, start: number, count: number): Tensor {
    const [M, D] = rows2(x, 'sliceRows');
    if (start < 0 || count < 0 || start + count > M)
      throw new Error(`sliceRows: [${start}, +${count}) of ${M}`);
    const xt = this.tensor(x, 'sliceRows x', 'f32');
    const y = this.alloc([count, D], 'f32');
    const src = xt.off + start * D * 4;
    this.rt.mem.u8.copyWithin(y.off, src, src + count * D * 4);
    return y;
  }
  argmax(x: Tensor): Tensor {
    const [M, N] = rows2(x, 'argmax');
    const xt = this.tensor(x, 'argmax x', 'f32');
    const y = this.alloc([M], 'i32');
    if (N > 0) this.rt.argmax(xt.off, y.off, M, N);
    return y;
  }

  // --- KV cache and attention ---------------------------------------------------------------------
  createKVCache(spec: KVCacheSpec): KVCache {
    const bytes = spec.layers * spec.kvHeads * spec.capacity * spec.headDim * 4;
    const k = this.rt.mem.alloc(bytes);
    const v = this.rt.mem.alloc(bytes);
    this.rt.mem.u8.fill(0, k, k + bytes);
    this.rt.mem.u8.fill(0, v, v + bytes);
    return new WasmKVCache({ ...spec }, k, v);
  }
  freeKVCache(c: KVCache): void {
    const wc = this.cache(c);
    this.rt.mem.release(wc.k);
    this.rt.mem.release(wc.v);
    wc.k = -1;
    wc.v = -1;
  }
  kvWrite(layer: number, k: Tensor, v: Tensor, spans: readonly SeqSpan[]): void {
    const kt = this.tensor(k, 'kvWrite k', 'f32');
    const vt = this.tensor(v, 'kvWrite v', 'f32');
    const u8 = this.rt.mem.u8;
    for (const s of spans) {
      const c = this.cache(s.cache);
      const { kvHeads, headDim, capacity } = c.spec;
      const width = kvHeads * headDim;
      if (k.shape[1] !== width) throw new Error(`kvWrite: k [${k.shape}] but cache rows are ${width} wide`);
      if (s.pos < 0 || s.pos + s.count > capacity) {
        throw new Error(
          `kvWrite: positions [${s.pos}, ${s.pos + s.count}) exceed cache capacity ${capacity}`,
        );
      }
      const rowBytes = headDim * 4;
      for (let h = 0; h < kvHeads; h++) {
        const dk = c.k + c.offset(layer, h, s.pos);
        const dv = c.v + c.offset(layer, h, s.pos);
        for (let i = 0; i < s.count; i++) {
          const src = ((s.row + i) * width + h * headDim) * 4;
          u8.copyWithin(dk + i * rowBytes, kt.off + src, kt.off + src + rowBytes);
          u8.copyWithin(dv + i * rowBytes, vt.off + src, vt.off + src + rowBytes);
        }
      }
    }
  }
  attention(q: Tensor, layer: number, spans: readonly SeqSpan[], heads: number, scale: number): Tensor {
    const [M, width] = rows2(q, 'attention');
    const qt = this.tensor(q, 'attention q', 'f32');
    const y = this.alloc([M, width], 'f32');
    this.rt.mem.u8.fill(0, y.off, y.off + M * width * 4); // rows outside every span are zero
    for (const s of spans) {
      const { args } = spanAttentionArgs(qt, width, s, layer, heads, scale, 'attention');
      this.rt.attention({ ...args, out: y.off + s.row * width * 4 });
    }
    return y;
  }
  sparseAttention(
    q: Tensor,
    layer: number,
    span: SeqSpan,
    plan: SparsePlan,
    heads: number,
    scale: number,
  ): { out: Tensor; lse: Tensor } {
    return sparseAttentionWasm(this.rt, q, layer, span, plan, heads, scale);
  }
  attentionRanges(
    q: Tensor,
    layer: number,
    spans: readonly SeqSpan[],
    keys: readonly (readonly Int32Array[] | null)[],
    heads: number,
    scale: number,
  ): Tensor {
    return attentionRangesWasm(this.rt, q, layer, spans, keys, heads, scale);
  }
  readNow(t: Tensor): Float32Array {
    const w = this.tensor(t, 'readNow()', 'f32');
    return this.rt.mem.f32.slice(w.off >> 2, (w.off >> 2) + w.size);
  }
  async kvRead(c: KVCache, layer: number, start: number, count: number): Promise<KVBlock> {
    const wc = this.cache(c);
    checkRange(wc, start, count);
    const { kvHeads, headDim } = wc.spec;
    const k = new Float32Array(kvHeads * count * headDim);
    const v = new Float32Array(kvHeads * count * headDim);
    const f = this.rt.mem.f32;
    for (let h = 0; h < kvHeads; h++) {
      const o = wc.offset(layer, h, start) >> 2;
      k.set(f.subarray((wc.k >> 2) + o, (wc.k >> 2) + o + count * headDim), h * count * headDim);
      v.set(f.subarray((wc.v >> 2) + o, (wc.v >> 2) + o + count * headDim), h * count * headDim);
    }
    return { k, v };
  }
  kvLoad(c: KVCache, layer: number, start: number, block: KVBlock): void {
    const wc = this.cache(c);
    const { kvHeads, headDim } = wc.spec;
    const count = block.k.length / (kvHeads * headDim);
    if (!Number.isInteger(count) || block.v.length !== block.k.length)
      throw new Error('kvLoad: block size mismatch');
    checkRange(wc, start, count);
    const f = this.rt.mem.f32;
    for (let h = 0; h < kvHeads; h++) {
      const o = wc.offset(layer, h, start) >> 2;
      f.set(block.k.subarray(h * count * headDim, (h + 1) * count * headDim), (wc.k >> 2) + o);
      f.set(block.v.subarray(h * count * headDim, (h + 1) * count * headDim), (wc.v >> 2) + o);
    }
  }
  kvGather(c: KVCache, layer: number, start: number, count: number): { k: Tensor; v: Tensor } {
    const wc = this.cache(c);
    checkRange(wc, start, count);
    const { kvHeads, headDim } = wc.spec;
    const width = kvHeads * headDim;
    const k = this.alloc([count, width], 'f32');
    const v = this.alloc([count, width], 'f32');
    const u8 = this.rt.mem.u8;
    const rowBytes = headDim * 4;
    for (let h = 0; h < kvHeads; h++) {
      const sk = wc.k + wc.offset(layer, h, start);
      const sv = wc.v + wc.offset(layer, h, start);
      for (let p = 0; p < count; p++) {
        const dst = (p * width + h * headDim) * 4;
        u8.copyWithin(k.off + dst, sk + p * rowBytes, sk + (p + 1) * rowBytes);
        u8.copyWithin(v.off + dst, sv + p * rowBytes, sv + (p + 1) * rowBytes);
      }
    }
    return { k, v };
  }
}

function checkRange(c: WasmKVCache, start: number, count: number): void {
  if (start < 0 || count < 0 || start + count > c.spec.capacity) {
    throw new Error(`KV cache: positions [${start}, ${start + count}) outside capacity ${c.spec.capacity}`);
  }
}

/** Starts the runtime (builds the kernels on first use, starts `threads - 1` workers). */
export async function createWasmBackend(opts: RuntimeOptions = {}): Promise<WasmBackend> {
  return new WasmBackend(await WasmRuntime.create(opts));
}
