// The `wasm` backend: its kernels over WasmRuntime, behind the checking layer (../checked.ts). Tensors
// and KV caches live in the runtime's shared memory; every op runs its kernel across the thread pool and
// returns when done, so read()/sync() only copy out. Pure data movement (slices, KV writes/reads) is done
// by the host on the same memory (memcpy speed).
import { dequantizeInto } from '../../quant/codecs.ts';
import { CheckedBackend } from '../checked.ts';
import { BLOCK_QUANT, DTYPES, type DType, type HostTensor, isBlockDType } from '../dtypes.ts';
import type { AttentionCall, KernelSpan, Kernels } from '../kernels.ts';
import type { FlatPlan } from '../plan.ts';
import { sectionLayout } from '../../kv/kv-codec.ts';
import type { KVBlock, KVCacheDType, KVCacheSpec, PackedKVSpec } from '../types.ts';
import { attentionWasm, sparseAttentionWasm } from './attention.ts';
import { matmulQuantWasm } from './quant-ops.ts';
import { HALF_IEEE, HALF_PRESCALED, type KVUnpackArgs, type RuntimeOptions, WasmRuntime } from './runtime.ts';
import { allocTensor, prescaleHalves, WasmKVCache, WasmTensor } from './tensors.ts';

type Call = AttentionCall<WasmTensor, WasmKVCache>;

export class WasmKernels implements Kernels<WasmTensor, WasmKVCache> {
  readonly name: string = 'wasm';
  /** q8_0 / q4_0 weights stay ggml blocks in memory (matmulQuantWasm reads them as stored) */
  readonly weightDTypes: readonly DType[] = ['f32', 'f16', 'q8_0', 'q4_0'];
  readonly kvDType: KVCacheDType = 'f32';
  readonly rt: WasmRuntime;
  private disposed = false;

  constructor(rt: WasmRuntime) {
    this.rt = rt;
  }

  get threads(): number {
    return this.rt.threads;
  }

  private alloc(elements: number): WasmTensor {
    return allocTensor(this.rt.mem, elements * 4);
  }

  // --- memory -------------------------------------------------------------------------------------
  upload(host: HostTensor): WasmTensor {
    const m = this.rt.mem;
    const off = m.alloc(host.data.byteLength);
    if (host.dtype === 'f32') m.f32.set(host.data, off >> 2);
    else if (host.dtype === 'i32') m.i32.set(host.data, off >> 2);
    else if (host.dtype === 'f16') {
      // f16 is stored pre-scaled by 2^10 where it fits, so subnormal halves widen without denormals
      const scaled = prescaleHalves(host.data);
      m.u16.set(scaled ?? host.data, off >> 1);
      return new WasmTensor(off, scaled ? HALF_PRESCALED : HALF_IEEE);
    } else m.u8.set(host.data, off);
    return new WasmTensor(off);
  }
  async read(t: WasmTensor, size: number): Promise<Float32Array> {
    return this.readNow(t, size);
  }
  async readInt(t: WasmTensor, size: number): Promise<Int32Array> {
    return this.rt.mem.i32.slice(t.off >> 2, (t.off >> 2) + size);
  }
  readNow(t: WasmTensor, size: number): Float32Array {
    return this.rt.mem.f32.slice(t.off >> 2, (t.off >> 2) + size);
  }
  free(t: WasmTensor): void {
    this.rt.mem.release(t.off);
  }
  async sync(): Promise<void> {}
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    void this.rt.close();
  }

  // --- ops ----------------------------------------------------------------------------------------
  matmul(
    x: WasmTensor,
    w: WasmTensor,
    wDType: DType,
    bias: WasmTensor | null,
    M: number,
    N: number,
    K: number,
  ) {
    const y = this.alloc(M * N);
    if (isBlockDType(wDType)) {
      matmulQuantWasm(this.rt, wDType, { x: x.off, w: w.off, bias: bias ? bias.off : 0, y: y.off, M, N, K });
      return y;
    }
    const f16 = wDType === 'f16';
    this.rt.matmul({
      x: x.off,
      w: w.off,
      bias: bias ? bias.off : 0,
      y: y.off,
      M,
      N,
      K,
      f16,
      f16Scale: w.halfScale,
    });
    return y;
  }
  rmsnorm(x: WasmTensor, w: WasmTensor, eps: number, M: number, D: number): WasmTensor {
    const y = this.alloc(M * D);
    this.rt.rmsnorm(x.off, w.off, y.off, M, D, eps);
    return y;
  }
  rope(x: WasmTensor, positions: WasmTensor, invFreq: WasmTensor, M: number, width: number, headDim: number) {
    const y = this.alloc(M * width);
    this.rt.rope(x.off, y.off, positions.off, invFreq.off, M, width, headDim);
    return y;
  }
  swiglu(gate: WasmTensor, up: WasmTensor, size: number): WasmTensor {
    const y = this.alloc(size);
    this.rt.swiglu(gate.off, up.off, y.off, size);
    return y;
  }
  softmax(x: WasmTensor, M: number, N: number): WasmTensor {
    const y = this.alloc(M * N);
    this.rt.softmax(x.off, y.off, M, N);
    return y;
  }
  add(a: WasmTensor, b: WasmTensor, size: number): WasmTensor {
    const y = this.alloc(size);
    this.rt.add(a.off, b.off, y.off, size);
    return y;
  }
  gather(
    table: WasmTensor,
    tableDType: DType,
    ids: WasmTensor,
    M: number,
    D: number,
    _V: number,
  ): WasmTensor {
    const y = this.alloc(M * D);
    if (isBlockDType(tableDType)) {
      // embeddings: the picked rows dequantized on the host (M rows of the step, not the whole table)
      const { block, entries } = DTYPES[tableDType];
      const rowBytes = (D / block) * entries;
      const m = this.rt.mem;
      const idx = m.i32.subarray(ids.off >> 2, (ids.off >> 2) + M);
      for (let i = 0; i < M; i++) {
        const src = table.off + idx[i] * rowBytes;
        const out = m.f32.subarray((y.off >> 2) + i * D, (y.off >> 2) + (i + 1) * D);
        dequantizeInto(BLOCK_QUANT[tableDType], m.u8.subarray(src, src + rowBytes), out);
      }
      return y;
    }
    this.rt.gather(table.off, ids.off, y.off, M, D, tableDType === 'f16', table.halfScale);
    return y;
  }
  sliceRows(x: WasmTensor, start: number, count: number, D: number): WasmTensor {
    const y = this.alloc(count * D);
    const src = x.off + start * D * 4;
    this.rt.mem.u8.copyWithin(y.off, src, src + count * D * 4);
    return y;
  }
  argmax(x: WasmTensor, M: number, N: number): WasmTensor {
    const y = this.alloc(M);
    if (N > 0) this.rt.argmax(x.off, y.off, M, N);
    return y;
  }

  // --- KV cache and attention ---------------------------------------------------------------------
  /**
   * A cache's memory is not cleared: every reader (attention of each mode, kvRead/kvGather, copyFrom)
   * stops at the positions written so far, so what a reused range held before is never read. (Clearing a
   * 26 MiB cache through a shared-memory `fill` cost ~20 ms per admitted request.)
   */
  createKVCache(spec: KVCacheSpec): WasmKVCache {
    const bytes = spec.layers * spec.kvHeads * spec.capacity * spec.headDim * 4;
    return new WasmKVCache(spec, this.rt.mem.alloc(bytes), this.rt.mem.alloc(bytes));
  }
  freeKVCache(c: WasmKVCache): void {
    this.rt.mem.release(c.k);
    this.rt.mem.release(c.v);
  }
  kvWrite(layer: number, k: WasmTensor, v: WasmTensor, spans: readonly KernelSpan<WasmKVCache>[]): void {
    const u8 = this.rt.mem.u8;
    for (const s of spans) {
      const c = s.cache;
      const { kvHeads, headDim } = s.spec;
      const width = kvHeads * headDim;
      const rowBytes = headDim * 4;
      for (let h = 0; h < kvHeads; h++) {
        const dk = c.k + c.offset(layer, h, s.pos);
        const dv = c.v + c.offset(layer, h, s.pos);
        for (let i = 0; i < s.count; i++) {
          const src = ((s.row + i) * width + h * headDim) * 4;
          u8.copyWithin(dk + i * rowBytes, k.off + src, k.off + src + rowBytes);
          u8.copyWithin(dv + i * rowBytes, v.off + src, v.off + src + rowBytes);
        }
      }
    }
  }
  attention(call: Call): WasmTensor {
    return attentionWasm(this.rt, call, null);
  }
  sparseAttention(call: Call, plan: FlatPlan): { out: WasmTensor; lse: WasmTensor } {
    return sparseAttentionWasm(this.rt, call, plan);
  }
  attentionRanges(call: Call, keys: readonly (FlatPlan | null)[]): WasmTensor {
    return attentionWasm(this.rt, call, keys);
  }
  async kvRead(
    c: WasmKVCache,
    spec: KVCacheSpec,
    layer: number,
    start: number,
    count: number,
  ): Promise<KVBlock> {
    const { kvHeads, headDim } = spec;
    const k = new Float32Array(kvHeads * count * headDim);
    const v = new Float32Array(kvHeads * count * headDim);
    const f = this.rt.mem.f32;
    for (let h = 0; h < kvHeads; h++) {
      const o = c.offset(layer, h, start) >> 2;
      k.set(f.subarray((c.k >> 2) + o, (c.k >> 2) + o + count * headDim), h * count * headDim);
      v.set(f.subarray((c.v >> 2) + o, (c.v >> 2) + o + count * headDim), h * count * headDim);
    }
    return { k, v };
  }
  kvLoad(
    c: WasmKVCache,
    spec: KVCacheSpec,
    layer: number,
    start: number,
    count: number,
    block: KVBlock,
  ): void {
    const { kvHeads, headDim } = spec;
    const f = this.rt.mem.f32;
    for (let h = 0; h < kvHeads; h++) {
      const o = c.offset(layer, h, start) >> 2;
      f.set(block.k.subarray(h * count * headDim, (h + 1) * count * headDim), (c.k >> 2) + o);
      f.set(block.v.subarray(h * count * headDim, (h + 1) * count * headDim), (c.v >> 2) + o);
    }
  }
  reserveBytes(bytes: number): { handle: WasmTensor; view: Uint8Array } {
    const t = allocTensor(this.rt.mem, Math.max(1, bytes));
    // the memory is shared: this view stays valid (and the same bytes) when the memory grows later
    return { handle: t, view: new Uint8Array(this.rt.mem.memory.buffer, t.off, bytes) };
  }
  kvUnpack(
    c: WasmKVCache,
    spec: KVCacheSpec,
    layer: number,
    pos: number,
    part: 'k' | 'v',
    src: WasmTensor,
    offset: number,
    packed: PackedKVSpec,
    delta: number,
    invFreq: WasmTensor | null,
  ): void {
    this.rt.kvUnpack(this.unpackArgs(c, spec, layer, pos, part, src, offset, packed, delta, invFreq));
  }
  /** kvUnpack's arguments as byte offsets into the memory (the wasm and the native kernel take the same). */
  protected unpackArgs(
    c: WasmKVCache,
    spec: KVCacheSpec,
    layer: number,
    pos: number,
    part: 'k' | 'v',
    src: WasmTensor,
    offset: number,
    packed: PackedKVSpec,
    delta: number,
    invFreq: WasmTensor | null,
  ): KVUnpackArgs {
    const lay = sectionLayout(packed.dtype, part, packed, packed.quant);
    return {
      src: src.off + offset,
      dst: (part === 'k' ? c.k : c.v) + c.offset(layer, 0, pos),
      dtype: packed.dtype,
      part,
      kvHeads: spec.kvHeads,
      n: packed.n,
      headDim: spec.headDim,
      keyGroup: packed.quant?.keyGroup ?? 1,
      valueGroup: packed.quant?.valueGroup ?? 1,
      rowBytes: lay.row,
      steps: lay.steps,
      mins: lay.mins,
      headStride: spec.capacity * spec.headDim,
      delta,
      invFreq: invFreq?.off ?? 0,
      hadamard: part === 'k' && packed.quant?.keyTransform === 'hadamard',
    };
  }
  kvGather(c: WasmKVCache, spec: KVCacheSpec, layer: number, start: number, count: number) {
    const { kvHeads, headDim } = spec;
    const width = kvHeads * headDim;
    const k = this.alloc(count * width);
    const v = this.alloc(count * width);
    const u8 = this.rt.mem.u8;
    const rowBytes = headDim * 4;
    for (let h = 0; h < kvHeads; h++) {
      const sk = c.k + c.offset(layer, h, start);
      const sv = c.v + c.offset(layer, h, start);
      for (let p = 0; p < count; p++) {
        const dst = (p * width + h * headDim) * 4;
        u8.copyWithin(k.off + dst, sk + p * rowBytes, sk + (p + 1) * rowBytes);
        u8.copyWithin(v.off + dst, sv + p * rowBytes, sv + (p + 1) * rowBytes);
      }
    }
    return { k, v };
  }
}

export type WasmBackend = CheckedBackend<WasmKernels>;

/** Starts the runtime (builds the kernels on first use, starts `threads - 1` workers). */
export async function createWasmBackend(opts: RuntimeOptions = {}): Promise<WasmBackend> {
  return new CheckedBackend(new WasmKernels(await WasmRuntime.create(opts)));
}
