// The one checking layer: the Backend interface over any backend's kernels (kernels.ts). Every op's
// arguments are validated here, once, for all backends — tensor ownership and liveness, dtypes, shapes,
// spans against their caches, plans and key ranges (plan.ts) — and the kernel gets handles and sizes.
// Tensors and caches handed to the engine are this layer's objects wrapping the kernels' handles.
import { type DType, elements, type HostTensor, hostEntries, isDType } from './dtypes.ts';
import {
  checkLayer,
  checkPositions,
  DeviceKVCache,
  DeviceTensor,
  fail,
  kernelSpan,
  liveCache,
  liveHandle,
  matrix,
} from './handles.ts';
import type { AttentionCall, Kernels } from './kernels.ts';
import { checkUnpack, livePacked, reservePacked, unpack, uploadPacked } from './packed-kv.ts';
import { flattenPlan, flattenRanges } from './plan.ts';
import type {
  Backend,
  Capabilities,
  KVBlock,
  KVCache,
  KVCacheSpec,
  PackedKV,
  PackedKVSpec,
  SeqSpan,
  SparsePlan,
  Tensor,
} from './types.ts';

// biome-ignore lint/suspicious/noExplicitAny: the checking layer holds any backend's handles
type AnyKernels = Kernels<any, any>;
type Handle<K extends AnyKernels> = K extends Kernels<infer T, unknown> ? T : never;
type CacheHandle<K extends AnyKernels> = K extends Kernels<unknown, infer C> ? C : never;

export class CheckedBackend<K extends AnyKernels> implements Backend {
  readonly kernels: K;
  readonly caps: Capabilities;

  constructor(kernels: K) {
    this.kernels = kernels;
    this.caps = {
      weightDTypes: [...new Set<DType>(['f32', ...kernels.weightDTypes])],
      kvDType: kernels.kvDType,
      readNow: typeof kernels.readNow === 'function',
      sparseAttention: typeof kernels.sparseAttention === 'function',
      attentionRanges: typeof kernels.attentionRanges === 'function',
      kvUnpack: typeof kernels.kvUnpack === 'function' && typeof kernels.reserveBytes === 'function',
    };
  }

  get name(): string {
    return this.kernels.name;
  }

  // --- for code that drives this backend's kernels directly (kernel tests, benches) ----------------
  /** The kernel handle behind one of this backend's live tensors. */
  handleOf(t: Tensor): Handle<K> {
    return this.#h(t, 'handleOf', 'tensor');
  }
  /** The kernel handle behind one of this backend's live KV caches. */
  cacheOf(c: KVCache): CacheHandle<K> {
    return this.#cache(c, 'cacheOf').h;
  }
  /** A handle the kernels made, as one of this backend's tensors (owned by the caller). */
  adopt(h: Handle<K>, shape: readonly number[], dtype: DType = 'f32'): Tensor {
    return this.#wrap(h, [...shape], dtype);
  }

  // --- argument checks (handles.ts) ---------------------------------------------------------------
  #h(t: Tensor, op: string, what: string, dtypes?: DType | readonly DType[]): Handle<K> {
    return liveHandle<Handle<K>>(this, t, op, what, dtypes);
  }
  #cache(c: KVCache, op: string): { h: CacheHandle<K>; spec: KVCacheSpec } {
    return liveCache<CacheHandle<K>>(this, c, op);
  }
  /** An attention call: the step's spans against q ([rows, heads·headDim]) and their caches. */
  #call(
    op: string,
    q: Tensor,
    layer: number,
    spans: readonly SeqSpan[],
    heads: number,
    scale: number,
  ): AttentionCall<Handle<K>, CacheHandle<K>> {
    const [rows, width] = matrix(q, op, 'q');
    const out = spans.map((s) => {
      const k = kernelSpan<CacheHandle<K>>(this, op, s, rows, layer);
      if (width !== heads * k.spec.headDim) throw fail(op, `q [${q.shape}] for ${heads}×${k.spec.headDim}`);
      if (!Number.isInteger(heads) || heads < 1 || heads % k.spec.kvHeads !== 0)
        throw fail(op, `${heads} query heads over ${k.spec.kvHeads} kv heads`);
      return k;
    });
    return { q: this.#h(q, op, 'q', 'f32'), rows, width, layer, spans: out, heads, scale };
  }
  #wrap(
    h: Handle<K>,
    shape: readonly number[],
    dtype: DType = 'f32',
    ints: Int32Array | null = null,
  ): Tensor {
    return new DeviceTensor(this, shape, dtype, h, ints);
  }
  #need(op: string, cap: 'readNow' | 'sparseAttention' | 'attentionRanges'): void {
    if (!this.caps[cap]) throw fail(op, `backend ${this.name} does not have it (caps.${cap} is false)`);
  }

  // --- memory -------------------------------------------------------------------------------------
  upload(host: HostTensor): Tensor {
    if (!isDType(host.dtype)) throw fail('upload', `unknown dtype ${host.dtype}`);
    if (host.dtype !== 'i32' && !this.caps.weightDTypes.includes(host.dtype))
      throw fail('upload', `backend ${this.name} does not take ${host.dtype} tensors`);
    const entries = hostEntries(host.dtype, host.shape);
    if (typeof entries === 'string') throw fail('upload', entries);
    if (host.data.length !== entries)
      throw fail('upload', `${host.data.length} values for shape [${host.shape}] (${host.dtype})`);
    const ints = host.dtype === 'i32' ? host.data.slice() : null;
    return this.#wrap(this.kernels.upload(host), [...host.shape], host.dtype, ints);
  }
  async read(t: Tensor): Promise<Float32Array> {
    return this.kernels.read(this.#h(t, 'read', 'tensor', 'f32'), elements(t.shape));
  }
  async readInt(t: Tensor): Promise<Int32Array> {
    return this.kernels.readInt(this.#h(t, 'readInt', 'tensor', 'i32'), elements(t.shape));
  }
  readNow(t: Tensor): Float32Array {
    this.#need('readNow', 'readNow');
    return this.kernels.readNow!(this.#h(t, 'readNow', 'tensor', 'f32'), elements(t.shape));
  }
  free(t: Tensor): void {
    this.kernels.free(this.#h(t, 'free', 'tensor'));
    (t as DeviceTensor<unknown>).handle = null;
  }
  sync(): Promise<void> {
    return this.kernels.sync();
  }
  dispose(): void {
    this.kernels.dispose();
  }

  // --- ops ----------------------------------------------------------------------------------------
  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    const [m, k] = matrix(x, 'matmul', 'x');
    const [n, kw] = matrix(w, 'matmul', 'w');
    if (k !== kw) throw fail('matmul', `x [${x.shape}] · wᵀ [${w.shape}] inner dims differ`);
    const xh = this.#h(x, 'matmul', 'x', 'f32');
    const wh = this.#h(w, 'matmul', 'w', this.caps.weightDTypes);
    if (bias && elements(bias.shape) !== n) throw fail('matmul', `bias [${bias.shape}] for N=${n}`);
    const bh = bias ? this.#h(bias, 'matmul', 'bias', 'f32') : null;
    return this.#wrap(this.kernels.matmul(xh, wh, w.dtype, bh, m, n, k), [m, n]);
  }
  rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const [m, d] = matrix(x, 'rmsnorm', 'x');
    const xh = this.#h(x, 'rmsnorm', 'x', 'f32');
    const wh = this.#h(w, 'rmsnorm', 'weight', 'f32');
    if (elements(w.shape) !== d) throw fail('rmsnorm', `weight [${w.shape}] for rows of ${d}`);
    return this.#wrap(this.kernels.rmsnorm(xh, wh, eps, m, d), [m, d]);
  }
  rope(x: Tensor, positions: Tensor, invFreq: Tensor, headDim: number): Tensor {
    const [m, width] = matrix(x, 'rope', 'x');
    const xh = this.#h(x, 'rope', 'x', 'f32');
    const ph = this.#h(positions, 'rope', 'positions', 'i32');
    const fh = this.#h(invFreq, 'rope', 'invFreq', 'f32');
    const p = elements(positions.shape);
    const f = elements(invFreq.shape);
    if (!(headDim > 0 && headDim % 2 === 0 && width % headDim === 0 && f === headDim / 2 && p === m))
      throw fail('rope', `x [${x.shape}], positions [${p}], invFreq [${f}], headDim ${headDim}`);
    return this.#wrap(this.kernels.rope(xh, ph, fh, m, width, headDim), [m, width]);
  }
  swiglu(gate: Tensor, up: Tensor): Tensor {
    const gh = this.#h(gate, 'swiglu', 'gate', 'f32');
    const uh = this.#h(up, 'swiglu', 'up', 'f32');
    const size = elements(gate.shape);
    if (size !== elements(up.shape)) throw fail('swiglu', `[${gate.shape}] vs [${up.shape}]`);
    return this.#wrap(this.kernels.swiglu(gh, uh, size), [...gate.shape]);
  }
  softmax(x: Tensor): Tensor {
    const [m, n] = matrix(x, 'softmax', 'x');
    return this.#wrap(this.kernels.softmax(this.#h(x, 'softmax', 'x', 'f32'), m, n), [m, n]);
  }
  add(a: Tensor, b: Tensor): Tensor {
    const ah = this.#h(a, 'add', 'a', 'f32');
    const bh = this.#h(b, 'add', 'b', 'f32');
    const size = elements(a.shape);
    if (size !== elements(b.shape)) throw fail('add', `[${a.shape}] vs [${b.shape}]`);
    return this.#wrap(this.kernels.add(ah, bh, size), [...a.shape]);
  }
  gather(table: Tensor, ids: Tensor): Tensor {
    const [v, d] = matrix(table, 'gather', 'table');
    const th = this.#h(table, 'gather', 'table', this.caps.weightDTypes);
    const ih = this.#h(ids, 'gather', 'ids', 'i32');
    const known = (ids as DeviceTensor<unknown>).ints;
    if (known)
      for (const i of known) if (!(i >= 0 && i < v)) throw fail('gather', `index ${i} outside [0, ${v})`);
    const m = elements(ids.shape);
    return this.#wrap(this.kernels.gather(th, table.dtype, ih, m, d, v), [m, d]);
  }
  sliceRows(x: Tensor, start: number, count: number): Tensor {
    const [m, d] = matrix(x, 'sliceRows', 'x');
    if (
      !(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= m)
    )
      throw fail('sliceRows', `[${start}, +${count}) outside ${m} rows`);
    const xh = this.#h(x, 'sliceRows', 'x', 'f32');
    return this.#wrap(this.kernels.sliceRows(xh, start, count, d), [count, d]);
  }
  argmax(x: Tensor): Tensor {
    const [m, n] = matrix(x, 'argmax', 'x');
    return this.#wrap(this.kernels.argmax(this.#h(x, 'argmax', 'x', 'f32'), m, n), [m], 'i32');
  }

  // --- KV cache -----------------------------------------------------------------------------------
  createKVCache(spec: KVCacheSpec): KVCache {
    const { layers, kvHeads, headDim, capacity } = spec;
    if (![layers, kvHeads, headDim].every((x) => Number.isInteger(x) && x >= 1))
      throw fail('createKVCache', `layers ${layers}, kv heads ${kvHeads}, head dim ${headDim}`);
    if (!Number.isInteger(capacity) || capacity < 0) throw fail('createKVCache', `capacity ${capacity}`);
    const s = { layers, kvHeads, headDim, capacity };
    return new DeviceKVCache(this, s, this.kernels.createKVCache(s));
  }
  freeKVCache(cache: KVCache): void {
    this.kernels.freeKVCache(this.#cache(cache, 'freeKVCache').h);
    (cache as DeviceKVCache<unknown>).handle = null;
  }
  kvWrite(layer: number, k: Tensor, v: Tensor, spans: readonly SeqSpan[]): void {
    const [rows, width] = matrix(k, 'kvWrite', 'k');
    if (v.shape.length !== 2 || v.shape[0] !== rows || v.shape[1] !== width)
      throw fail('kvWrite', `k [${k.shape}] vs v [${v.shape}]`);
    const kh = this.#h(k, 'kvWrite', 'k', 'f32');
    const vh = this.#h(v, 'kvWrite', 'v', 'f32');
    const kspans = spans.map((s) => {
      const ks = kernelSpan<CacheHandle<K>>(this, 'kvWrite', s, rows, layer);
      const wide = ks.spec.kvHeads * ks.spec.headDim;
      if (width !== wide) throw fail('kvWrite', `k [${k.shape}] but cache rows are ${wide} wide`);
      return ks;
    });
    this.kernels.kvWrite(layer, kh, vh, kspans);
  }
  async kvRead(cache: KVCache, layer: number, start: number, count: number): Promise<KVBlock> {
    const { h, spec } = this.#cache(cache, 'kvRead');
    checkLayer('kvRead', layer, spec);
    checkPositions('kvRead', spec, start, count);
    return this.kernels.kvRead(h, spec, layer, start, count);
  }
  kvLoad(cache: KVCache, layer: number, start: number, block: KVBlock): void {
    const { h, spec } = this.#cache(cache, 'kvLoad');
    checkLayer('kvLoad', layer, spec);
    const count = block.k.length / (spec.kvHeads * spec.headDim);
    if (!Number.isInteger(count) || block.v.length !== block.k.length)
      throw fail('kvLoad', 'block size mismatch');
    checkPositions('kvLoad', spec, start, count);
    this.kernels.kvLoad(h, spec, layer, start, count, block);
  }
  kvGather(cache: KVCache, layer: number, start: number, count: number): { k: Tensor; v: Tensor } {
    const { h, spec } = this.#cache(cache, 'kvGather');
    checkLayer('kvGather', layer, spec);
    checkPositions('kvGather', spec, start, count);
    const r = this.kernels.kvGather(h, spec, layer, start, count);
    const shape = [count, spec.kvHeads * spec.headDim];
    return { k: this.#wrap(r.k, shape), v: this.#wrap(r.v, shape) };
  }

  // --- packed chunk KV artifacts (packed-kv.ts) ------------------------------------------------------
  uploadPackedKV(
    spec: PackedKVSpec,
    bytes: Uint8Array,
    offsets: { k: readonly number[]; v: readonly number[] },
  ): PackedKV {
    return uploadPacked(this, this.kernels, this.caps.kvUnpack, spec, bytes, offsets);
  }
  reservePackedKV(
    spec: PackedKVSpec,
    offsets: { k: readonly number[]; v: readonly number[] },
    bytes: number,
  ): { packed: PackedKV; target: Uint8Array } {
    return reservePacked(this, this.kernels, this.caps.kvUnpack, spec, offsets, bytes);
  }
  freePackedKV(p: PackedKV): void {
    const d = livePacked<Handle<K>>(this, p, 'freePackedKV');
    if (d.handle !== null) this.kernels.free(d.handle);
    d.handle = null;
    d.host = null;
  }
  kvUnpack(cache: KVCache, layer: number, pos: number, src: PackedKV, delta: number, invFreq: Tensor): void {
    const { h, spec } = this.#cache(cache, 'kvUnpack');
    const p = livePacked<Handle<K>>(this, src, 'kvUnpack');
    checkUnpack(spec, layer, pos, p.spec, delta, invFreq.shape);
    unpack(this.kernels, h, spec, layer, pos, p, delta, this.#h(invFreq, 'kvUnpack', 'invFreq', 'f32'));
  }

  // --- attention ----------------------------------------------------------------------------------
  attention(q: Tensor, layer: number, spans: readonly SeqSpan[], heads: number, scale: number): Tensor {
    const c = this.#call('attention', q, layer, spans, heads, scale);
    return this.#wrap(this.kernels.attention(c), [c.rows, c.width]);
  }
  sparseAttention(
    q: Tensor,
    layer: number,
    span: SeqSpan,
    plan: SparsePlan,
    heads: number,
    scale: number,
  ): { out: Tensor; lse: Tensor } {
    this.#need('sparseAttention', 'sparseAttention');
    const c = this.#call('sparseAttention', q, layer, [span], heads, scale);
    const s = c.spans[0];
    const blocks = Math.ceil(s.count / plan.blockSize);
    const flat = flattenPlan(
      'sparseAttention',
      plan.ranges,
      plan.columns,
      plan.blockSize,
      s.spec.kvHeads,
      blocks,
      s.pos + s.count,
    );
    const r = this.kernels.sparseAttention!(c, flat);
    return { out: this.#wrap(r.out, [s.count, c.width]), lse: this.#wrap(r.lse, [s.count, heads]) };
  }
  attentionRanges(
    q: Tensor,
    layer: number,
    spans: readonly SeqSpan[],
    keys: readonly (readonly Int32Array[] | null)[],
    heads: number,
    scale: number,
  ): Tensor {
    this.#need('attentionRanges', 'attentionRanges');
    if (keys.length !== spans.length)
      throw fail('attentionRanges', `${keys.length} key lists for ${spans.length} spans`);
    const c = this.#call('attentionRanges', q, layer, spans, heads, scale);
    const flat = c.spans.map((s, i) => {
      const lists = keys[i];
      return lists ? flattenRanges('attentionRanges', lists, s.spec.kvHeads, s.count, s.spec.capacity) : null;
    });
    return this.#wrap(this.kernels.attentionRanges!(c, flat), [c.rows, c.width]);
  }
}
