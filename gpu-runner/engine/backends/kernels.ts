// The narrow interface each backend implements: its kernels. The checking layer (checked.ts) is the only
// caller: it has validated every argument (shapes, dtypes, ownership, ranges, plans) before a kernel
// runs, and passes the sizes it worked out, so a kernel only computes. T is the backend's tensor handle
// (a typed array, a byte offset in wasm memory, a GPU buffer), C its KV-cache handle; both are opaque
// to the engine, which sees the checking layer's Tensor / KVCache objects.
//
// Capabilities are data (types.ts Capabilities): the checking layer derives readNow, sparseAttention and
// attentionRanges from which optional kernels exist, and takes weightDTypes and kvDType from here. To
// extend (backends/README.md): a new weight dtype is a row in dtypes.ts plus its case in the matmul and
// gather kernels of each backend that lists it in weightDTypes; a new backend is a Kernels object (or one
// that delegates to another's, e.g. native kernels over the wasm memory) and a registry entry.
import type { DType, HostTensor } from './dtypes.ts';
import type { FlatPlan } from './plan.ts';
import type { KVBlock, KVCacheDType, KVCacheSpec, PackedKVSpec } from './types.ts';

/** One sequence span of a step, its cache resolved to the backend's handle. */
export interface KernelSpan<C> {
  cache: C;
  spec: KVCacheSpec;
  row: number;
  count: number;
  pos: number;
}

/** One attention call: q [rows, width = heads·headDim] over the spans' caches at `layer`. */
export interface AttentionCall<T, C> {
  q: T;
  rows: number;
  width: number;
  layer: number;
  spans: readonly KernelSpan<C>[];
  heads: number;
  scale: number;
}

export interface Kernels<T, C> {
  readonly name: string;
  /** Weight dtypes matmul/gather take besides f32. */
  readonly weightDTypes: readonly DType[];
  readonly kvDType: KVCacheDType;

  // --- memory: sizes are element counts -----------------------------------------------------------
  upload(host: HostTensor): T;
  read(t: T, size: number): Promise<Float32Array>;
  readInt(t: T, size: number): Promise<Int32Array>;
  /** Present on backends that run each op to completion: a synchronous host copy. */
  readNow?(t: T, size: number): Float32Array;
  free(t: T): void;
  sync(): Promise<void>;
  dispose(): void;

  // --- ops: each returns a new handle of the shape the checking layer states ----------------------
  /** x [m, k] f32 · w [n, k] (wDType) ᵀ + bias [n] → [m, n] */
  matmul(x: T, w: T, wDType: DType, bias: T | null, m: number, n: number, k: number): T;
  /** x [m, d], w [d] → [m, d] */
  rmsnorm(x: T, w: T, eps: number, m: number, d: number): T;
  /** x [m, width], positions i32 [m], invFreq [headDim/2] → [m, width] */
  rope(x: T, positions: T, invFreq: T, m: number, width: number, headDim: number): T;
  /** gate, up [size] → [size] */
  swiglu(gate: T, up: T, size: number): T;
  /** x [m, n] → [m, n] */
  softmax(x: T, m: number, n: number): T;
  /** a, b [size] → [size] */
  add(a: T, b: T, size: number): T;
  /** table [v, d] (tableDType), ids i32 [m] each in [0, v) → [m, d] f32 */
  gather(table: T, tableDType: DType, ids: T, m: number, d: number, v: number): T;
  /** rows [start, start + count) of x [*, d] → [count, d] */
  sliceRows(x: T, start: number, count: number, d: number): T;
  /** x [m, n] → i32 [m] */
  argmax(x: T, m: number, n: number): T;

  // --- KV cache and attention: spans fit their caches, q's width is heads × the caches' headDim ----
  createKVCache(spec: KVCacheSpec): C;
  freeKVCache(c: C): void;
  /** k, v [*, kvHeads·headDim] */
  kvWrite(layer: number, k: T, v: T, spans: readonly KernelSpan<C>[]): void;
  kvRead(c: C, spec: KVCacheSpec, layer: number, start: number, count: number): Promise<KVBlock>;
  kvLoad(c: C, spec: KVCacheSpec, layer: number, start: number, count: number, block: KVBlock): void;
  kvGather(c: C, spec: KVCacheSpec, layer: number, start: number, count: number): { k: T; v: T };
  /** Dense causal attention → [rows, width], rows outside every span zero. */
  attention(call: AttentionCall<T, C>): T;
  /** One span (call.spans[0]); the plan per kv head and query block. → out [count, width], lse [count, heads] */
  sparseAttention?(call: AttentionCall<T, C>, plan: FlatPlan): { out: T; lse: T };
  /** keys[i]: span i's ranges per kv head as a one-block plan, or null = dense causal. → [rows, width] */
  attentionRanges?(call: AttentionCall<T, C>, keys: readonly (FlatPlan | null)[]): T;

  // --- packed chunk KV (both or neither; without them the checking layer decodes on the host) -------
  /**
   * `bytes` bytes of device memory the host writes in place (a CPU backend's memory is host memory):
   * the handle, freed with free(), and a view of exactly those bytes.
   */
  reserveBytes?(bytes: number): { handle: T; view: Uint8Array };
  /**
   * One section (layer `layer`'s `part` of a packed artifact, at byte `offset` of src) → cache rows
   * [pos, pos + packed.n) of every kv head; keys rotated by delta when invFreq is given.
   */
  kvUnpack?(
    c: C,
    spec: KVCacheSpec,
    layer: number,
    pos: number,
    part: 'k' | 'v',
    src: T,
    offset: number,
    packed: PackedKVSpec,
    delta: number,
    invFreq: T | null,
  ): void;
}
