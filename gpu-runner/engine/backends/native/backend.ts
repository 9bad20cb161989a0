// The `native` backend: the wasm backend's kernels with the heavy ones — matmul (f32, f16, Q8_0 / Q4_0),
// dense causal attention (one call for all of a step's sequences), the KV writes, the packed chunk KV unpack
// (kvUnpack), SwiGLU, argmax, RMSNorm, RoPE and the residual add — run by the
// N-API addon (native/kernels.ts) on the same shared memory by byte offsets, so tensors, caches, uploads
// and the other ops (squeezed and sparse attention, gathers, softmax) stay wasm's with no copies.
// Q8_0 / Q4_0 weights are packed at upload into the layout the int8 kernels read (the ggml bytes are not
// kept; embedding rows are unpacked on gather). Two thread pools share the cores: the addon's (the caller plus threads − 1 native workers,
// spinning 100 µs after a job) runs the matmuls, attention and light ops back to back; the wasm workers run only
// the wasm ops large enough to be worth a wake-up (prefill-sized) and go to sleep at once (spinMs 0), so they
// do not hold a core the next native op needs.
// KV caches are f32, IEEE halves with kvDType 'f16', or int8 rows with an f32 scale each with kvDType 'int8'
// (half-kv.ts: the addon narrows or quantizes on write and widens on load, every other reader and writer
// goes through strided conversions to and from f32).
// The wasm memory is advised onto transparent huge pages (hugePages, default on; Linux, where THP is not
// 'never'): a 16-sequence decode step reads 16 caches' layers and every weight matrix, and with 4 KiB pages
// each of those streams crosses a page (a TLB miss and a page walk) every 4 KiB.
import { availableParallelism } from 'node:os';
import { BackendUnavailableError } from '../../errors.ts';
import { CheckedBackend } from '../checked.ts';
import { type DType, type HostTensor, isBlockDType } from '../dtypes.ts';
import type { AttentionCall, KernelSpan } from '../kernels.ts';
import type { FlatPlan } from '../plan.ts';
import type { KVBlock, KVCacheDType, KVCacheSpec, PackedKVSpec } from '../types.ts';
import { WasmKernels } from '../wasm/backend.ts';
import { type RuntimeOptions, WasmRuntime, wasmBackendAvailable } from '../wasm/runtime.ts';
import { MAX_MEMORY_BYTES } from '../wasm/memory.ts';
import { allocTensor, WasmKVCache, WasmTensor } from '../wasm/tensors.ts';
import { gatherHalf, loadHalf, readHalf, widenSpans } from './half-kv.ts';
import { loadNativeKernels } from './index.ts';
import type { NativeKernels } from './kernels.ts';

/** µs the native workers poll for the next job before sleeping (the ops of a layer come back to back). */
const NATIVE_SPIN_US = 100;
/** The wasm runtime's inline thresholds × this (WasmRuntime inlineScale): a 16-row decode step's light
 * ops run on the calling thread; a prefill's still split over the wasm workers. */
const LIGHT_INLINE_SCALE = 16;

/** The addon's attention takes head dims that fill whole 16-float vectors. */
function nativeAttentionFits(headDim: number): boolean {
  return headDim % 16 === 0 && headDim <= 256;
}

/** Element type of the native backend's KV caches (every KV_CACHE_DTYPES entry). */
export type NativeKVDType = KVCacheDType;

type Call = AttentionCall<WasmTensor, WasmKVCache>;

export class NativeWasmKernels extends WasmKernels {
  override readonly name: string = 'native';
  override readonly kvDType: NativeKVDType;
  readonly native: NativeKernels;
  /** Whether the OS took the advice to back this backend's memory with huge pages (createNativeBackend). */
  hugePages = false;

  constructor(rt: WasmRuntime, native: NativeKernels, kvDType: NativeKVDType = 'f32') {
    super(rt);
    this.native = native;
    this.kvDType = kvDType;
  }

  override upload(host: HostTensor): WasmTensor {
    if (!isBlockDType(host.dtype)) return super.upload(host);
    const [N, K] = host.shape;
    const off = this.rt.mem.alloc(this.native.packedBytes(host.dtype, Math.max(N, 1), K));
    if (N > 0) this.native.packWeights(host.dtype, host.data as Uint8Array, 0, N, K, this.rt.mem.u8, off);
    return new WasmTensor(off);
  }

  override matmul(
    x: WasmTensor,
    w: WasmTensor,
    wDType: DType,
    bias: WasmTensor | null,
    M: number,
    N: number,
    K: number,
  ): WasmTensor {
    const y = allocTensor(this.rt.mem, M * N * 4);
    if (M === 0 || N === 0) return y;
    const args = { x: x.off, w: w.off, bias: bias ? bias.off : 0, y: y.off, M, N, K };
    if (isBlockDType(wDType)) this.native.matmulQ(this.rt.mem.u8, wDType, args);
    else this.native.matmul(this.rt.mem.u8, { ...args, f16: wDType === 'f16', f16Scale: w.halfScale });
    return y;
  }

  override gather(
    table: WasmTensor,
    tableDType: DType,
    ids: WasmTensor,
    M: number,
    D: number,
    V: number,
  ): WasmTensor {
    if (!isBlockDType(tableDType)) return super.gather(table, tableDType, ids, M, D, V);
    const y = allocTensor(this.rt.mem, M * D * 4);
    if (M > 0)
      this.native.gatherQ(this.rt.mem.u8, tableDType, {
        w: table.off,
        ids: ids.off,
        y: y.off,
        M,
        N: V,
        K: D,
      });
    return y;
  }

  override swiglu(gate: WasmTensor, up: WasmTensor, size: number): WasmTensor {
    const y = allocTensor(this.rt.mem, size * 4);
    this.native.swiglu(this.rt.mem.u8, { gate: gate.off, up: up.off, y: y.off, size });
    return y;
  }

  override rmsnorm(x: WasmTensor, w: WasmTensor, eps: number, M: number, D: number): WasmTensor {
    const y = allocTensor(this.rt.mem, M * D * 4);
    if (M > 0) this.native.rmsnorm(this.rt.mem.u8, { x: x.off, w: w.off, y: y.off, M, D, eps });
    return y;
  }

  override rope(
    x: WasmTensor,
    positions: WasmTensor,
    invFreq: WasmTensor,
    M: number,
    width: number,
    headDim: number,
  ): WasmTensor {
    const y = allocTensor(this.rt.mem, M * width * 4);
    if (M > 0)
      this.native.rope(this.rt.mem.u8, {
        x: x.off,
        y: y.off,
        positions: positions.off,
        invFreq: invFreq.off,
        M,
        width,
        headDim,
      });
    return y;
  }

  override add(a: WasmTensor, b: WasmTensor, size: number): WasmTensor {
    const y = allocTensor(this.rt.mem, size * 4);
    if (size > 0) this.native.add(this.rt.mem.u8, { a: a.off, b: b.off, y: y.off, n: size });
    return y;
  }

  override argmax(x: WasmTensor, M: number, N: number): WasmTensor {
    const y = allocTensor(this.rt.mem, M * 4);
    if (M > 0 && N > 0) this.native.argmax(this.rt.mem.u8, { x: x.off, out: y.off, M, N });
    return y;
  }

  // --- KV cache: f32 as wasm's, or f16 / int8 (half-kv.ts) ----------------------------------------
  // int8: codes [layer][kv_head][pos][head_dim] (a 64-value row is one cache line), scales f32
  // [layer][kv_head][pos] in their own allocation, so code rows stay contiguous and aligned
  override createKVCache(spec: KVCacheSpec): WasmKVCache {
    if (this.kvDType === 'f32') return super.createKVCache(spec);
    const rows = spec.layers * spec.kvHeads * spec.capacity;
    const mem = this.rt.mem;
    if (this.kvDType === 'int8')
      return new WasmKVCache(spec, mem.alloc(rows * spec.headDim), mem.alloc(rows * spec.headDim), false, {
        k: mem.alloc(rows * 4),
        v: mem.alloc(rows * 4),
      });
    const bytes = rows * spec.headDim * 2;
    return new WasmKVCache(spec, mem.alloc(bytes), mem.alloc(bytes), true);
  }
  override freeKVCache(c: WasmKVCache): void {
    super.freeKVCache(c);
    if (c.scales) {
      this.rt.mem.release(c.scales.k);
      this.rt.mem.release(c.scales.v);
    }
  }
  override async kvRead(c: WasmKVCache, spec: KVCacheSpec, layer: number, start: number, count: number) {
    if (c.dtype === 'f32') return super.kvRead(c, spec, layer, start, count);
    return readHalf(this.rt, this.native, c, layer, start, count);
  }
  override kvLoad(
    c: WasmKVCache,
    spec: KVCacheSpec,
    layer: number,
    start: number,
    count: number,
    block: KVBlock,
  ) {
    if (c.dtype === 'f32') {
      super.kvLoad(c, spec, layer, start, count, block);
      return;
    }
    loadHalf(this.rt, this.native, c, layer, start, count, block);
  }
  override kvGather(c: WasmKVCache, spec: KVCacheSpec, layer: number, start: number, count: number) {
    if (c.dtype === 'f32') return super.kvGather(c, spec, layer, start, count);
    return gatherHalf(this.rt, this.native, c, layer, start, count);
  }
  /**
   * The addon's kv_unpack (native/src/kvunpack.cc): every section dtype, into f32, f16 or int8 caches (rows
   * narrowed or quantized as they are written, after keys are re-rotated in f32; an f16 section into an f16
   * cache widens and narrows exactly).
   */
  override kvUnpack(
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
    const args = this.unpackArgs(c, spec, layer, pos, part, src, offset, packed, delta, invFreq);
    const q8 = c.scales
      ? {
          scales: (part === 'k' ? c.scales.k : c.scales.v) + c.scaleOffset(layer, 0, pos),
          scaleHeadStride: spec.capacity,
        }
      : null;
    this.native.kvUnpack(this.rt.mem.u8, args, c.half, q8);
  }
  /** f16 / int8: the wasm sparse prefill over an f32 copy of the layer's written positions. */
  override sparseAttention(call: Call, plan: FlatPlan): { out: WasmTensor; lse: WasmTensor } {
    if (call.spans.every((s) => s.cache.dtype === 'f32')) return super.sparseAttention(call, plan);
    const w = widenSpans(this.rt, this.native, call.spans, call.layer);
    try {
      return super.sparseAttention({ ...call, layer: 0, spans: w.spans }, plan);
    } finally {
      w.free();
    }
  }
  /** f16 / int8: the wasm key-range attention over f32 copies of the layer's written positions. */
  override attentionRanges(call: Call, keys: readonly (FlatPlan | null)[]): WasmTensor {
    if (call.spans.every((s) => s.cache.dtype === 'f32')) return super.attentionRanges(call, keys);
    const w = widenSpans(this.rt, this.native, call.spans, call.layer);
    try {
      return super.attentionRanges({ ...call, layer: 0, spans: w.spans }, keys);
    } finally {
      w.free();
    }
  }

  /** Every span's rows in one addon call (a decode batch writes 16 sequences' K/V at once). */
  override kvWrite(
    layer: number,
    k: WasmTensor,
    v: WasmTensor,
    spans: readonly KernelSpan<WasmKVCache>[],
  ): void {
    if (spans.length === 0) return;
    const { kvHeads, headDim } = spans[0].spec;
    const dtype = spans[0].cache.dtype;
    if (spans.some((s) => s.cache.dtype !== dtype))
      throw new Error('kvWrite: caches of different element types in one call');
    const ws = spans.map((s) => {
      const c = s.cache;
      const base = c.offset(layer, 0, s.pos);
      const sb = c.scaleOffset(layer, 0, s.pos);
      return {
        dk: c.k + base,
        dv: c.v + base,
        kvHeadStride: c.spec.capacity * headDim,
        row: s.row,
        count: s.count,
        ...(c.scales ? { dks: c.scales.k + sb, dvs: c.scales.v + sb, scaleHeadStride: c.spec.capacity } : {}),
      };
    });
    this.native.kvWrite(this.rt.mem.u8, {
      k: k.off,
      v: v.off,
      width: kvHeads * headDim,
      headDim,
      spans: ws,
      half: dtype === 'f16',
      q8: dtype === 'int8',
    });
  }

  /** Dense causal attention of every span in one addon call: the units of all sequences share the pool. */
  override attention(call: Call): WasmTensor {
    const { q, rows, width, layer, spans, heads, scale } = call;
    const dtype = spans.length > 0 ? spans[0].cache.dtype : 'f32';
    if (spans.some((s) => s.cache.dtype !== dtype))
      throw new Error('attention: caches of different element types in one call');
    if (spans.length === 0 || !nativeAttentionFits(spans[0].spec.headDim)) {
      if (dtype === 'f32') return super.attention(call);
      const w = widenSpans(this.rt, this.native, spans, layer);
      try {
        return super.attention({ ...call, layer: 0, spans: w.spans });
      } finally {
        w.free();
      }
    }
    const y = allocTensor(this.rt.mem, rows * width * 4);
    // rows outside every span are zero; spans that tile the rows in order (a step's) leave none
    let next = 0;
    for (const s of spans) if (s.row === next) next += s.count;
    if (next !== rows) this.rt.mem.u8.fill(0, y.off, y.off + rows * width * 4);
    const args = spans.map((s) => ({
      ...(dtype === 'int8'
        ? { ...s.cache.q8View(layer), kvHeads: s.spec.kvHeads }
        : s.cache.layerView(layer)),
      row: s.row,
      nq: s.count,
      qpos0: s.pos,
      nk: s.pos + s.count,
    }));
    this.native.attentionSpans(this.rt.mem.u8, {
      q: q.off,
      out: y.off,
      heads,
      headDim: spans[0].spec.headDim,
      scale,
      qStride: width,
      spans: args,
      half: dtype === 'f16',
      q8: dtype === 'int8',
    });
    return y;
  }
}

export type NativeBackend = CheckedBackend<NativeWasmKernels>;

/** Whether the native backend can run here: wasm (for the light ops) and the addon both load. */
export async function nativeBackendAvailable(): Promise<boolean> {
  return wasmBackendAvailable() && (await loadNativeKernels()).ok;
}

/**
 * Loads the addon (building it when stale), sizes its pool to `threads`, starts the wasm runtime.
 * kvDType: the KV caches' element type (f32 by default; f16 halves the bytes decode attention reads, int8
 * (a scale per 64-value row) reads 68 of f32's 256 bytes per row).
 * hugePages (default true): advise the memory onto transparent huge pages before anything is stored.
 */
export async function createNativeBackend(
  opts: Omit<RuntimeOptions, 'spinMs' | 'inlineScale'> & {
    kvDType?: NativeKVDType;
    hugePages?: boolean;
  } = {},
): Promise<NativeBackend> {
  if (!wasmBackendAvailable())
    throw new BackendUnavailableError('the native backend needs WebAssembly SIMD and SharedArrayBuffer');
  const load = await loadNativeKernels();
  if (!load.ok) throw new BackendUnavailableError(`the native kernels are not available: ${load.reason}`);
  const threads = opts.threads ?? availableParallelism();
  // one addon per process: its pool takes the threads of the backend created last
  load.kernels.configure({ threads, spinUs: NATIVE_SPIN_US });
  const { kvDType, hugePages = true, ...rtOpts } = opts;
  const rt = await WasmRuntime.create({ ...rtOpts, threads, spinMs: 0, inlineScale: LIGHT_INLINE_SCALE });
  const kernels = new NativeWasmKernels(rt, load.kernels, kvDType);
  // the whole reservation, so the pages the memory grows into (weights, caches) are covered too
  if (hugePages) kernels.hugePages = load.kernels.adviseHugePages(rt.mem.u8, MAX_MEMORY_BYTES);
  return new CheckedBackend(kernels);
}
