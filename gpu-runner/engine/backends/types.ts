// The Backend interface the engine (gpu-runner/engine/model.ts and the attention code) talks to. Every
// backend is the one checking layer (checked.ts) over that backend's kernels (kernels.ts): the checking
// layer validates each op's arguments once and calls the kernel. Tensors are device-resident, opaque
// handles; ops *enqueue* work and return handles synchronously; only readbacks (read/readInt/kvRead)
// and sync() await completion. A backend that executes eagerly (reference) does the work inside the call.
//
// Conventions for every op:
// - Activations are f32, row-major, 2-D `[rows, cols]`. Token rows of all sequences in one step are
//   concatenated: row r belongs to exactly one sequence span (see SeqSpan).
// - Weights are f32, f16 or (where a backend lists them in caps.weightDTypes) ggml block formats;
//   bf16 is converted to f32 by the loader before upload.
// - Integer tensors (token ids, positions, row indices) are i32, 1-D.
// - Ops never mutate their inputs, except the kv* ops which write the cache they are given.
// - Every returned tensor is owned by the caller, who frees it with free() when done (backends pool
//   memory; freeing a tensor twice or using it after free is an error).
// - A wrong argument (shape, dtype, a tensor of another backend or freed, a range outside a cache) throws
//   BackendArgumentError naming the op; an op the backend lacks (see caps) throws too.
import type { ArtifactDType } from '../../../contracts/artifacts.ts';
import type { QuantParams } from '../kv/kv-codec.ts';
import type { DType, HostTensor } from './dtypes.ts';

export type { DType, HostTensor } from './dtypes.ts';

/** A device-resident tensor: an opaque handle. */
export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** Shape of one sequence's preallocated KV cache. */
export interface KVCacheSpec {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Positions preallocated; writes beyond it throw. */
  capacity: number;
}

/**
 * One sequence's KV cache on the device.
 * k, v: [layer][kv_head][position][head_dim], keys stored post-RoPE.
 * The cache does not track a length: the engine knows which positions are valid.
 */
export interface KVCache {
  readonly spec: KVCacheSpec;
}

/**
 * Which rows of a step's activations belong to one sequence and where they sit in it:
 * rows [row, row + count) are that sequence's tokens at positions [pos, pos + count).
 */
export interface SeqSpan {
  cache: KVCache;
  row: number;
  count: number;
  pos: number;
}

/** Host copy of a position range of one layer of a cache. k, v: [kv_head][count][head_dim]. */
export interface KVBlock {
  k: Float32Array;
  v: Float32Array;
}

/**
 * Sparse prefill's key selection for one span (DESIGN.md §4.3), per kv head and query block: query block
 * b holds the span's rows [b·blockSize, min((b + 1)·blockSize, count)). For kv head g and block b:
 * ranges[g][b] = [s0, e0, s1, e1, …], disjoint [start, end) cache positions, each within
 * [0, span.pos + span.count); columns[g][b] = further single cache positions ("vertical" keys), none of
 * them inside a range of that block, no duplicates (order free). Every query head of g's group uses g's
 * selection. Both may reach past a row's own position: the causal mask still applies (see sparseAttention).
 */
export interface SparsePlan {
  blockSize: number;
  ranges: Int32Array[][]; // [kv_head][query block] → flat (start, end) pairs
  columns: Int32Array[][]; // [kv_head][query block] → positions
}

/**
 * Element type of a backend's KV caches: f32, IEEE halves, or int8 codes with an f32 scale per (layer, kv
 * head, position) row (symmetric per-row quantization; the native backend only).
 */
export const KV_CACHE_DTYPES = ['f32', 'f16', 'int8'] as const;
export type KVCacheDType = (typeof KV_CACHE_DTYPES)[number];

/** What a backend can do beyond the ops every backend has: data, checked by callers before they ask. */
export interface Capabilities {
  /** Weight dtypes matmul/gather accept (f32 always). */
  readonly weightDTypes: readonly DType[];
  /** Element type the KV cache keeps on the device (reads and loads are f32 either way). */
  readonly kvDType: KVCacheDType;
  /** readNow: a synchronous host copy inside a step (backends that run each op to completion). */
  readonly readNow: boolean;
  /** sparseAttention (sparse prefill). */
  readonly sparseAttention: boolean;
  /** attentionRanges (squeezed attention). */
  readonly attentionRanges: boolean;
  /**
   * kvUnpack runs as one device kernel (widen or dequantize, and re-rotate keys, in one pass); without it
   * the checking layer decodes on the host and re-rotates with kvGather/rope/kvWrite (same results).
   */
  readonly kvUnpack: boolean;
}

/** Shape and encoding of one chunk KV artifact's sections (gpu-runner/engine/kv/kv-codec.ts). */
export interface PackedKVSpec {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** tokens, at positions 0..n−1 */
  n: number;
  dtype: ArtifactDType;
  /** int8/int4 group sizes; null for f32/f16 */
  quant: QuantParams | null;
}

/**
 * One chunk KV artifact's K and V sections on the device, as stored (not decoded): what the engine-memory
 * tier keeps resident, decoded into a sequence's cache by kvUnpack. bytes: the device bytes it holds.
 */
export interface PackedKV {
  readonly spec: PackedKVSpec;
  readonly bytes: number;
}

export interface Backend {
  /** 'reference' | 'wasm' | 'webgpu' | … (registry.ts) */
  readonly name: string;
  readonly caps: Capabilities;

  // --- memory -----------------------------------------------------------------------------------
  upload(host: HostTensor): Tensor;
  /** Device → host, awaiting all enqueued work that produces t. f32 tensors only. */
  read(t: Tensor): Promise<Float32Array>;
  /** Device → host for i32 tensors. */
  readInt(t: Tensor): Promise<Int32Array>;
  /**
   * caps.readNow only: a host copy of an f32 tensor, synchronously, for decisions inside a step (squeezed
   * attention's cluster selection, sparse prefill's estimate). Backends that queue work (WebGPU) lack it.
   */
  readNow(t: Tensor): Float32Array;
  free(t: Tensor): void;
  /** Awaits completion of everything enqueued so far. */
  sync(): Promise<void>;
  /** Frees everything this backend holds (weights, caches, pools). */
  dispose(): void;

  // --- ops (enqueue; return a new tensor) -------------------------------------------------------
  /** y = x · wᵀ (+ bias). x: [M, K] f32; w: [N, K] of a weight dtype; bias: [N] f32 → [M, N] f32. */
  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor;
  /** y = x / sqrt(mean(x²) + eps) · w, per row. x: [M, D]; w: [D] f32 → [M, D]. */
  rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor;
  /**
   * Rotate-half RoPE per head. x: [M, heads·headDim]; positions: i32 [M]; invFreq: [headDim/2] f32
   * (already rope-scaled). For row m, pair (x_i, x_{i+d/2}) with angle a = positions[m]·invFreq[i]
   * (computed in f32): x' = x·cos a − y·sin a, y' = y·cos a + x·sin a. Passing position deltas
   * (p_new − p_old, may be negative) re-rotates already-rotated keys.
   */
  rope(x: Tensor, positions: Tensor, invFreq: Tensor, headDim: number): Tensor;
  /** silu(gate) · up, elementwise. gate, up: [M, F] → [M, F]. */
  swiglu(gate: Tensor, up: Tensor): Tensor;
  /** Row-wise softmax. x: [M, N] → [M, N]. */
  softmax(x: Tensor): Tensor;
  /** a + b, same shape (residual). */
  add(a: Tensor, b: Tensor): Tensor;
  /** Row gather: table: [V, D] of a weight dtype or f32; ids: i32 [M] → [M, D] f32. */
  gather(table: Tensor, ids: Tensor): Tensor;
  /** Rows [start, start + count) of x: [M, D] → [count, D]. */
  sliceRows(x: Tensor, start: number, count: number): Tensor;
  /** Row-wise argmax. x: [M, N] f32 → i32 [M] (greedy decoding without reading logits back). */
  argmax(x: Tensor): Tensor;

  // --- KV cache and attention -------------------------------------------------------------------
  createKVCache(spec: KVCacheSpec): KVCache;
  freeKVCache(cache: KVCache): void;
  /**
   * Writes rows [span.row, span.row + span.count) of k and v (each [M, kvHeads·headDim], k post-RoPE)
   * into span.cache at positions [span.pos, span.pos + span.count) of `layer`.
   */
  kvWrite(layer: number, k: Tensor, v: Tensor, spans: readonly SeqSpan[]): void;
  /**
   * Causal GQA attention of each span's queries over its cache. q: [M, heads·headDim] (post-RoPE).
   * Query row span.row + i sits at position span.pos + i and attends to cache positions
   * 0..span.pos + i (inclusive) of `layer`; query head h reads kv head floor(h / (heads / kvHeads)).
   * Scores are scaled by `scale` (usually 1/sqrt(headDim)). → [M, heads·headDim]; rows outside every
   * span are zero. The cache must already hold positions up to the span's last one (kvWrite first).
   */
  attention(q: Tensor, layer: number, spans: readonly SeqSpan[], heads: number, scale: number): Tensor;
  /**
   * caps.sparseAttention only (sparse prefill, DESIGN.md §4.3): causal GQA attention of ONE span's
   * queries over the keys `plan` selects. Query row span.row + i (position p = span.pos + i, query block
   * b = floor(i / plan.blockSize)), head h (kv head g = floor(h / (heads / kvHeads))) attends to
   * S = {keys in ranges[g][b] or columns[g][b]} ∩ [0, p], with an exact softmax over S:
   * out = Σ_{j∈S} softmax_j(scale·q·k_j) v_j (any summation order / online softmax is fine, f32).
   * Returns out: [span.count, heads·headDim] (the span's rows only: row i is q row span.row + i) and
   * lse: [span.count, heads] = log Σ_{j∈S} exp(scale·q·k_j) (natural log; S empty → lse = -inf, out = 0).
   * A plan with ranges[g][b] = [0, span.pos + span.count) everywhere reproduces attention() (≤ 1e-5).
   * The caller frees both tensors.
   */
  sparseAttention(
    q: Tensor,
    layer: number,
    span: SeqSpan,
    plan: SparsePlan,
    heads: number,
    scale: number,
  ): { out: Tensor; lse: Tensor };
  /**
   * caps.attentionRanges only (squeezed attention's step, DESIGN.md §4.2): causal GQA attention
   * restricted to key ranges: like attention(), except that for span i with keys[i] ≠ null, query head h
   * of kv head g attends only to the positions of keys[i][g] = [s0, e0, s1, e1, …] (disjoint [start, end)
   * ranges, any order, each within the cache) that are also ≤ its own position (span.pos + row). One list
   * serves the kv head's whole query group. A span with keys[i] = null is attended exactly as attention()
   * does; a list [0, span.pos + span.count) reproduces attention() too. Rows with no key get zeros.
   * → [M, heads·headDim].
   */
  attentionRanges(
    q: Tensor,
    layer: number,
    spans: readonly SeqSpan[],
    keys: readonly (readonly Int32Array[] | null)[],
    heads: number,
    scale: number,
  ): Tensor;
  /** Copies positions [start, start + count) of `layer` to the host (chunk KV artifacts). */
  kvRead(cache: KVCache, layer: number, start: number, count: number): Promise<KVBlock>;
  /** Host → cache: writes a KVBlock ([kv_head][count][head_dim]) at positions [start, start + count). */
  kvLoad(cache: KVCache, layer: number, start: number, block: KVBlock): void;
  /**
   * Device-side copy of positions [start, start + count) of `layer` into tensors k, v:
   * each [count, kvHeads·headDim] (the kvWrite layout), e.g. to re-rotate with rope() and write back.
   */
  kvGather(cache: KVCache, layer: number, start: number, count: number): { k: Tensor; v: Tensor };
  /**
   * Host → device copy of an artifact's K/V sections as stored. `bytes` holds them; `offsets.k[l]` and
   * `offsets.v[l]` are where layer l's sections start in it (their sizes follow from spec).
   */
  uploadPackedKV(
    spec: PackedKVSpec,
    bytes: Uint8Array,
    offsets: { k: readonly number[]; v: readonly number[] },
  ): PackedKV;
  /**
   * Device memory for an artifact's sections that the caller writes in place, e.g. by reading them from
   * storage straight into `target` (no staging copy): `bytes` long, with `offsets` relative to its start.
   * The packed artifact is usable once every section has been written; free it with freePackedKV.
   */
  reservePackedKV(
    spec: PackedKVSpec,
    offsets: { k: readonly number[]; v: readonly number[] },
    bytes: number,
  ): { packed: PackedKV; target: Uint8Array };
  freePackedKV(p: PackedKV): void;
  /**
   * Decodes layer `layer` of `src` (K and V of its n tokens) into cache positions [pos, pos + n) of the same
   * layer, keys re-rotated by Δ = delta with invFreq ([headDim/2] f32, as rope()): a stored chunk moved
   * from 0..n−1 to pos..pos+n−1 takes delta = pos.
   */
  kvUnpack(cache: KVCache, layer: number, pos: number, src: PackedKV, delta: number, invFreq: Tensor): void;
}
