// The `native` backend: the wasm backend's kernels with the heavy ones — matmul (f32, f16, Q8_0 / Q4_0),
// dense causal attention (one call for all of a step's sequences), the KV writes, the packed chunk KV unpack
// (kvUnpack), SwiGLU and argmax — run by the
// N-API addon (native/kernels.ts) on the same shared memory by byte offsets, so tensors, caches, uploads
// and the other light ops (norms, RoPE, adds, squeezed and sparse attention) stay wasm's with no copies.
// Q8_0 / Q4_0 weights are packed at upload into the layout the int8 kernels read (the ggml bytes are not
// kept; embedding rows are unpacked on gather). Two thread pools share the cores: the addon's (the caller plus threads − 1 native workers,
// spinning 100 µs after a job) runs the matmuls and attention back to back; the wasm workers run only the
// light ops large enough to be worth a wake-up (prefill-sized) and go to sleep at once (spinMs 0), so they
// do not hold a core the next native op needs.
import { availableParallelism } from 'node:os';
import { BackendUnavailableError } from '../../errors.ts';
import { CheckedBackend } from '../checked.ts';
import { type DType, type HostTensor, isBlockDType } from '../dtypes.ts';
import type { AttentionCall, KernelSpan } from '../kernels.ts';
import type { KVCacheSpec, PackedKVSpec } from '../types.ts';
import { WasmKernels } from '../wasm/backend.ts';
import { type RuntimeOptions, WasmRuntime, wasmBackendAvailable } from '../wasm/runtime.ts';
import { allocTensor, type WasmKVCache, WasmTensor } from '../wasm/tensors.ts';
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

export class NativeWasmKernels extends WasmKernels {
  override readonly name: string = 'native';
  readonly native: NativeKernels;

  constructor(rt: WasmRuntime, native: NativeKernels) {
    super(rt);
    this.native = native;
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

  override argmax(x: WasmTensor, M: number, N: number): WasmTensor {
    const y = allocTensor(this.rt.mem, M * 4);
    if (M > 0 && N > 0) this.native.argmax(this.rt.mem.u8, { x: x.off, out: y.off, M, N });
    return y;
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
    const ws = spans.map((s) => {
      const c = s.cache;
      const base = c.offset(layer, 0, s.pos);
      return {
        dk: c.k + base,
        dv: c.v + base,
        kvHeadStride: c.spec.capacity * headDim,
        row: s.row,
        count: s.count,
      };
    });
    this.native.kvWrite(this.rt.mem.u8, { k: k.off, v: v.off, width: kvHeads * headDim, headDim, spans: ws });
  }

  /** A packed artifact section into the cache by the addon's kv_unpack (the same arguments as wasm's). */
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
    this.native.kvUnpack(this.rt.mem.u8, args);
  }

  /** Dense causal attention of every span in one addon call: the units of all sequences share the pool. */
  override attention(call: AttentionCall<WasmTensor, WasmKVCache>): WasmTensor {
    const { q, rows, width, layer, spans, heads, scale } = call;
    if (spans.length === 0 || !nativeAttentionFits(spans[0].spec.headDim)) return super.attention(call);
    const y = allocTensor(this.rt.mem, rows * width * 4);
    // rows outside every span are zero; spans that tile the rows in order (a step's) leave none
    let next = 0;
    for (const s of spans) if (s.row === next) next += s.count;
    if (next !== rows) this.rt.mem.u8.fill(0, y.off, y.off + rows * width * 4);
    const args = spans.map((s) => ({
      ...s.cache.layerArgs(layer),
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
    });
    return y;
  }
}

export type NativeBackend = CheckedBackend<NativeWasmKernels>;

/** Whether the native backend can run here: wasm (for the light ops) and the addon both load. */
export async function nativeBackendAvailable(): Promise<boolean> {
  return wasmBackendAvailable() && (await loadNativeKernels()).ok;
}

/** Loads the addon (building it when stale), sizes its pool to `threads`, starts the wasm runtime. */
export async function createNativeBackend(
  opts: Omit<RuntimeOptions, 'spinMs' | 'inlineScale'> = {},
): Promise<NativeBackend> {
  if (!wasmBackendAvailable())
    throw new BackendUnavailableError('the native backend needs WebAssembly SIMD and SharedArrayBuffer');
  const load = await loadNativeKernels();
  if (!load.ok) throw new BackendUnavailableError(`the native kernels are not available: ${load.reason}`);
  const threads = opts.threads ?? availableParallelism();
  // one addon per process: its pool takes the threads of the backend created last
  load.kernels.configure({ threads, spinUs: NATIVE_SPIN_US });
  const rt = await WasmRuntime.create({ ...opts, threads, spinMs: 0, inlineScale: LIGHT_INLINE_SCALE });
  return new CheckedBackend(new NativeWasmKernels(rt, load.kernels));
}
