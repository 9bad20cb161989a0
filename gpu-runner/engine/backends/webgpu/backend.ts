// The `webgpu` backend: the Backend interface over WGSL kernels on Dawn. Ops record dispatches into the
// step's command batch (recorder.ts) and return at once; read()/readInt()/kvRead() submit the batch and
// await the copy, so a greedy decode step reads back only its token ids. Device loss fails the reads in
// flight (DeviceLostError), then a new device is opened and the uploaded tensors (weights) restored
// from their host copies; tensors computed on the lost device and KV caches' contents are gone.
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
import { f16Table, f32ToF16 } from '../../half.ts';
import { BufferPool, GpuKVCache, GpuTensor, tensorBytes } from './buffers.ts';
import { type DeviceInfo, openDevice, type WebGPUMode } from './device.ts';
import { grid1d, gridRows } from './kernels/common.ts';
import * as ew from './kernels/elementwise.ts';
import { GEMV_ROWS, matmulGemv, matmulTiled, TILE_M, TILE_N } from './kernels/matmul.ts';
import { matmulSubgroupMatrix, subgroupMatrixTile } from './kernels/subgroup-matrix.ts';
import * as at from './kernels/attention.ts';
import { type Binding, Recorder } from './recorder.ts';
import { checkSubgroupMatrix } from './subgroup-check.ts';
import { attendPlan, attendSpan } from './attend.ts';

export class DeviceLostError extends Error {
  readonly retryable = true;
  constructor(message: string) {
    super(`webgpu device lost: ${message}`);
    this.name = 'DeviceLostError';
  }
}

export interface WebGPUOptions {
  /** 'auto' (native GPU, else OpenGL ES / llvmpipe), 'native', or 'opengl' (force the CPU fallback). */
  mode?: WebGPUMode;
  /** Keep host copies of uploaded tensors to restore them after device loss (default true). */
  restoreOnLoss?: boolean;
  /** Most splits of decode attention (flash decoding); default 32. */
  maxSplits?: number;
  /** Keys per split below which decode attention is not split further; default 256. */
  keysPerSplit?: number;
  /**
   * Subgroup-matrix matmul for prefill with f16 weights where the adapter lists it (default true). It
   * rounds activations to f16; it is used only after it matched the tiled kernel on the device.
   */
  subgroupMatrix?: boolean;
  /**
   * KV cache storage: f32 (default; the reference's numbers) or f16 (half the memory and bandwidth; keys
   * and values rounded to f16 when written, attention still in f32). Reads and loads stay f32 blocks.
   */
  kvDType?: 'f32' | 'f16';
}

/** Rows from which an f16-weight matmul goes to the subgroup-matrix kernel (when it is on). */
const SGM_MIN_ROWS = 16;

export class WebGPUBackend implements Backend {
  readonly name = 'webgpu';
  readonly weightDTypes: readonly DType[] = ['f32', 'f16'];
  device: GPUDevice;
  info: DeviceInfo;
  private pool: BufferPool;
  rec: Recorder;
  private readonly opts: WebGPUOptions;
  /** Bumped on every device loss; tensors of older generations are dead. */
  private generation = 0;
  private readonly uploads = new Set<GpuTensor>();
  private readonly caches = new Set<GpuKVCache>();
  private readonly inflight = new Set<(err: Error) => void>();
  private disposed = false;
  private recovering: Promise<void> | null = null;
  /** Set when no new device could be opened after a loss: every later call fails with it. */
  private failed: DeviceLostError | null = null;
  /** Bindings for kernels' unused inputs and outputs (two: one buffer may not be both in a dispatch). */
  private dummy: GPUBuffer;
  private dummyW: GPUBuffer;
  /** Keys one attention workgroup takes before the key range is split over more (flash decoding). */
  get keysPerSplit(): number {
    return this.opts.keysPerSplit ?? 256;
  }
  get maxSplits(): number {
    return this.opts.maxSplits ?? 32;
  }
  /** Called after a device loss was recovered (the runner logs it). */
  onDeviceLost: ((reason: string) => void) | null = null;

  private constructor(dev: { device: GPUDevice; info: DeviceInfo }, opts: WebGPUOptions) {
    this.opts = opts;
    this.device = dev.device;
    this.info = dev.info;
    this.pool = new BufferPool(this.device);
    this.rec = new Recorder(this.device, this.pool);
    this.dummy = this.device.createBuffer({ size: 16, usage: 0x80 | 0x08 });
    this.dummyW = this.device.createBuffer({ size: 16, usage: 0x80 | 0x08 });
    this.watch(this.device, this.generation);
  }

  static async create(opts: WebGPUOptions = {}): Promise<WebGPUBackend> {
    const b = new WebGPUBackend(await openDevice(opts.mode ?? 'auto'), opts);
    await b.checkSubgroupMatrix();
    return b;
  }

  /** 'on', 'unavailable' (adapter lists no f16→f32 configuration), or why it was turned off. */
  subgroupMatrix = 'unavailable';

  private async checkSubgroupMatrix(): Promise<void> {
    const cfg = this.info.subgroupMatrix;
    if (!cfg) return;
    if (this.opts.subgroupMatrix === false) {
      this.subgroupMatrix = 'off (disabled by option)';
      return;
    }
    this.subgroupMatrix = await checkSubgroupMatrix(this, cfg, (on) => {
      this.subgroupMatrix = on ? 'on' : 'checking';
    });
  }

  // --- device loss --------------------------------------------------------------------------------
  private watch(device: GPUDevice, gen: number): void {
    void device.lost.then((info) => {
      if (this.disposed || gen !== this.generation) return;
      this.recovering = this.recover(`${info.reason}: ${info.message}`);
    });
  }

  private async recover(reason: string): Promise<void> {
    this.generation++;
    const err = new DeviceLostError(reason);
    for (const fail of this.inflight) fail(err);
    this.inflight.clear();
    let opened: Awaited<ReturnType<typeof openDevice>>;
    try {
      opened = await openDevice(this.opts.mode ?? 'auto');
    } catch (e) {
      this.failed = new DeviceLostError(`${reason}; no new device: ${(e as Error).message}`);
      this.recovering = null;
      return;
    }
    if (this.disposed) {
      opened.device.destroy();
      return;
    }
    this.device = opened.device;
    this.info = opened.info;
    this.pool = new BufferPool(this.device);
    this.rec = new Recorder(this.device, this.pool);
    this.dummy = this.device.createBuffer({ size: 16, usage: 0x80 | 0x08 });
    this.dummyW = this.device.createBuffer({ size: 16, usage: 0x80 | 0x08 });
    for (const t of this.uploads) {
      if (!t.host) continue;
      t.buffer = this.pool.acquire(t.bytes, true);
      t.generation = this.generation;
      this.write(t.buffer, t.host);
    }
    for (const c of this.caches) {
      c.k = this.device.createBuffer({ size: Math.max(16, c.bytes), usage: 0x80 | 0x04 | 0x08 });
      c.v = this.device.createBuffer({ size: Math.max(16, c.bytes), usage: 0x80 | 0x04 | 0x08 });
      c.generation = this.generation;
    }
    this.watch(this.device, this.generation);
    this.recovering = null;
    this.onDeviceLost?.(reason);
  }

  /** Resolves once a lost device has been replaced (immediately when none was lost). */
  async ready(): Promise<void> {
    await this.recovering;
    if (this.failed) throw this.failed;
  }

  /** Runs a readback so that a device loss rejects it with DeviceLostError. */
  private guard<T>(p: Promise<T>): Promise<T> {
    const gen = this.generation;
    return new Promise<T>((resolve, reject) => {
      const fail = (e: Error) => reject(e);
      this.inflight.add(fail);
      p.then(
        (v) => {
          this.inflight.delete(fail);
          resolve(v);
        },
        (e: unknown) => {
          // a map aborted by a lost device can settle before device.lost does: look again a task later
          setTimeout(() => {
            this.inflight.delete(fail);
            const msg = String((e as Error)?.message ?? e);
            reject(this.generation !== gen || this.recovering ? new DeviceLostError(msg) : e);
          }, 0);
        },
      );
    });
  }

  // --- helpers ------------------------------------------------------------------------------------
  private t(x: Tensor, what: string, dtype?: DType): GpuTensor & { buffer: GPUBuffer } {
    if (!(x instanceof GpuTensor)) throw new Error('webgpu backend: tensor from another backend');
    if (this.failed) throw this.failed;
    if (!x.buffer) throw new Error('webgpu backend: tensor used after free()');
    if (x.generation !== this.generation)
      throw new DeviceLostError(`${what}: tensor computed on a device that was lost`);
    if (dtype && x.dtype !== dtype)
      throw new Error(`webgpu backend: ${what} must be ${dtype}, got ${x.dtype}`);
    return x as GpuTensor & { buffer: GPUBuffer };
  }
  private c(x: KVCache): GpuKVCache & { k: GPUBuffer; v: GPUBuffer } {
    if (!(x instanceof GpuKVCache)) throw new Error('webgpu backend: KV cache from another backend');
    if (!x.k || !x.v) throw new Error('webgpu backend: KV cache used after freeKVCache()');
    return x as GpuKVCache & { k: GPUBuffer; v: GPUBuffer };
  }
  alloc(shape: readonly number[], dtype: DType, hostWrite = false): GpuTensor & { buffer: GPUBuffer } {
    const bytes = tensorBytes(
      shape.reduce((a, b) => a * b, 1),
      dtype,
    );
    return new GpuTensor(shape, dtype, this.pool.acquire(bytes, hostWrite), this.generation) as GpuTensor & {
      buffer: GPUBuffer;
    };
  }
  private write(buf: GPUBuffer, data: Float32Array | Uint16Array | Int32Array): void {
    if (data.byteLength === 0) return;
    if (data.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
    } else {
      const padded = new Uint8Array(data.byteLength + 2);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(buf, 0, padded);
    }
  }
  /** A binding of exactly the tensor's bytes (so arrayLength and robustness see its real size). */
  bind(t: GpuTensor & { buffer: GPUBuffer }): Binding {
    return { buffer: t.buffer, size: Math.max(4, t.bytes) };
  }
  get none(): Binding {
    return { buffer: this.dummy };
  }
  get noneW(): Binding {
    return { buffer: this.dummyW };
  }
  /** A temporary i32/u32 table on the device (index lists); freed after the current batch. */
  uploadIndex(data: Int32Array | Uint32Array): GpuTensor & { buffer: GPUBuffer } {
    const t = this.alloc([data.length], 'i32', true);
    this.write(t.buffer, new Int32Array(data.buffer, data.byteOffset, data.length));
    return t;
  }

  // --- memory -------------------------------------------------------------------------------------
  upload(host: HostTensor): Tensor {
    if (this.failed) throw this.failed;
    const n = host.shape.reduce((a, b) => a * b, 1);
    if (host.data.length !== n)
      throw new Error(`upload: ${host.data.length} values for shape [${host.shape}]`);
    const t = this.alloc([...host.shape], host.dtype, true);
    this.write(t.buffer, host.data);
    // ids are checked on the host (gather); uploads are restored after device loss
    if (host.dtype === 'i32' || this.opts.restoreOnLoss !== false) {
      t.host = host.data.slice();
      this.uploads.add(t);
    }
    return t;
  }
  async read(x: Tensor): Promise<Float32Array> {
    const t = this.t(x, 'read()', 'f32');
    if (t.size === 0) return new Float32Array(0);
    const bytes = await this.guard(this.rec.readback([{ buffer: t.buffer, offset: 0, bytes: t.size * 4 }]));
    return new Float32Array(bytes);
  }
  async readInt(x: Tensor): Promise<Int32Array> {
    const t = this.t(x, 'readInt()', 'i32');
    if (t.size === 0) return new Int32Array(0);
    const bytes = await this.guard(this.rec.readback([{ buffer: t.buffer, offset: 0, bytes: t.size * 4 }]));
    return new Int32Array(bytes);
  }
  free(x: Tensor): void {
    if (!(x instanceof GpuTensor)) throw new Error('webgpu backend: tensor from another backend');
    if (!x.buffer) throw new Error('webgpu backend: tensor used after free() (freed twice)');
    if (x.generation === this.generation) this.pool.release(x.buffer);
    x.buffer = null;
    x.host = null;
    this.uploads.delete(x);
  }
  async sync(): Promise<void> {
    this.rec.flush();
    await this.guard(this.device.queue.onSubmittedWorkDone());
  }
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rec.dispose();
    this.pool.destroyAll();
    for (const c of this.caches) {
      c.k?.destroy();
      c.v?.destroy();
      c.k = null;
      c.v = null;
    }
    this.caches.clear();
    this.uploads.clear();
    this.device.destroy();
  }

  // --- ops ----------------------------------------------------------------------------------------
  matmul(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
    const [M, K] = rows2(x, 'matmul');
    const [N, Kw] = rows2(w, 'matmul');
    if (K !== Kw) throw new Error(`matmul: x [${x.shape}] · wᵀ [${w.shape}] inner dims differ`);
    const xt = this.t(x, 'matmul x', 'f32');
    const wt = this.t(w, 'matmul w');
    if (wt.dtype === 'i32') throw new Error('matmul: weights must be f32 or f16');
    const bt = bias ? this.t(bias, 'matmul bias', 'f32') : null;
    if (bt && bt.size !== N) throw new Error(`matmul: bias [${bias?.shape}] for N=${N}`);
    const y = this.alloc([M, N], 'f32');
    const dt = wt.dtype as 'f32' | 'f16';
    const bufs = [this.bind(xt), this.bind(wt), bt ? this.bind(bt) : this.none, this.bind(y)];
    const sgm = this.info.subgroupMatrix;
    if (sgm && this.subgroupMatrix === 'on' && dt === 'f16' && M >= SGM_MIN_ROWS) {
      const tile = subgroupMatrixTile(sgm);
      this.rec.dispatch(matmulSubgroupMatrix(dt, sgm), [M, N, K, bt ? 1 : 0], bufs, [
        Math.ceil(N / tile.cols),
        Math.ceil(M / tile.rows),
      ]);
    } else if (M <= GEMV_ROWS) {
      this.rec.dispatch(matmulGemv(dt), [M, N, K, bt ? 1 : 0], bufs, gridRows(N));
    } else {
      if (Math.ceil(M / TILE_M) > 65535) throw new Error(`matmul: ${M} rows in one call`);
      this.rec.dispatch(matmulTiled(dt), [M, N, K, bt ? 1 : 0], bufs, [
        Math.ceil(N / TILE_N),
        Math.ceil(M / TILE_M),
      ]);
    }
    return y;
  }
  rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const [M, D] = rows2(x, 'rmsnorm');
    const xt = this.t(x, 'rmsnorm x', 'f32');
    const wt = this.t(w, 'rmsnorm weight', 'f32');
    if (wt.size !== D) throw new Error(`rmsnorm: weight [${w.shape}] for rows of ${D}`);
    const y = this.alloc([M, D], 'f32');
    this.rec.dispatch(ew.rmsnorm, [M, D, eps], [this.bind(xt), this.bind(wt), this.bind(y)], gridRows(M));
    return y;
  }
  rope(x: Tensor, positions: Tensor, invFreq: Tensor, headDim: number): Tensor {
    const [M, width] = rows2(x, 'rope');
    const xt = this.t(x, 'rope x', 'f32');
    const pt = this.t(positions, 'rope positions', 'i32');
    const ft = this.t(invFreq, 'rope invFreq', 'f32');
    if (headDim % 2 !== 0 || width % headDim !== 0 || ft.size !== headDim / 2 || pt.size !== M) {
      throw new Error(
        `rope: x [${x.shape}], positions [${pt.size}], invFreq [${ft.size}], headDim ${headDim}`,
      );
    }
    const y = this.alloc([M, width], 'f32');
    this.rec.dispatch(
      ew.rope,
      [M, width, headDim / 2],
      [this.bind(xt), this.bind(pt), this.bind(ft), this.bind(y)],
      grid1d((M * width) / 2),
    );
    return y;
  }
  swiglu(gate: Tensor, up: Tensor): Tensor {
    const g = this.t(gate, 'swiglu gate', 'f32');
    const u = this.t(up, 'swiglu up', 'f32');
    if (g.size !== u.size) throw new Error(`swiglu: [${gate.shape}] vs [${up.shape}]`);
    const y = this.alloc(gate.shape, 'f32');
    this.rec.dispatch(ew.swiglu, [g.size], [this.bind(g), this.bind(u), this.bind(y)], grid1d(g.size));
    return y;
  }
  softmax(x: Tensor): Tensor {
    const [M, N] = rows2(x, 'softmax');
    const xt = this.t(x, 'softmax x', 'f32');
    const y = this.alloc([M, N], 'f32');
    this.rec.dispatch(ew.softmax, [M, N], [this.bind(xt), this.bind(y)], gridRows(M));
    return y;
  }
  add(a: Tensor, b: Tensor): Tensor {
    const at2 = this.t(a, 'add a', 'f32');
    const bt = this.t(b, 'add b', 'f32');
    if (at2.size !== bt.size) throw new Error(`add: [${a.shape}] vs [${b.shape}]`);
    const y = this.alloc(a.shape, 'f32');
    this.rec.dispatch(ew.add, [at2.size], [this.bind(at2), this.bind(bt), this.bind(y)], grid1d(at2.size));
    return y;
  }
  gather(table: Tensor, ids: Tensor): Tensor {
    const [V, D] = rows2(table, 'gather');
    const tt = this.t(table, 'gather table');
    if (tt.dtype === 'i32') throw new Error('gather: table must be f32 or f16');
    const it = this.t(ids, 'gather ids', 'i32');
    // ids uploaded from the host are checked here; device-made ids (argmax) are in range by construction
    if (it.host)
      for (const i of it.host) if (i < 0 || i >= V) throw new Error(`gather: index ${i} outside [0, ${V})`);
    const y = this.alloc([it.size, D], 'f32');
    this.rec.dispatch(
      ew.gather(tt.dtype as 'f32' | 'f16'),
      [it.size, D, V],
      [this.bind(tt), this.bind(it), this.bind(y)],
      grid1d(it.size * D),
    );
    return y;
  }
  sliceRows(x: Tensor, start: number, count: number): Tensor {
    const [M, D] = rows2(x, 'sliceRows');
    if (start < 0 || count < 0 || start + count > M)
      throw new Error(`sliceRows: [${start}, +${count}) of ${M}`);
    const xt = this.t(x, 'sliceRows x', 'f32');
    const y = this.alloc([count, D], 'f32');
    if (count * D > 0)
      this.rec.copyEncoder().copyBufferToBuffer(xt.buffer, start * D * 4, y.buffer, 0, count * D * 4);
    return y;
  }
  argmax(x: Tensor): Tensor {
    const [M, N] = rows2(x, 'argmax');
    const xt = this.t(x, 'argmax x', 'f32');
    const y = this.alloc([M], 'i32');
    if (N > 0) this.rec.dispatch(ew.argmax, [M, N], [this.bind(xt), this.bind(y)], gridRows(M));
    return y;
  }

  // --- KV cache and attention ---------------------------------------------------------------------
  createKVCache(spec: KVCacheSpec): KVCache {
    if (this.failed) throw this.failed;
    if (spec.headDim > at.MAX_HEAD_DIM)
      throw new Error(`webgpu backend: head_dim ${spec.headDim} > ${at.MAX_HEAD_DIM}`);
    const dtype = this.opts.kvDType ?? 'f32';
    if (dtype === 'f16' && spec.headDim % 2 !== 0)
      throw new Error('webgpu backend: an f16 KV cache needs an even head_dim');
    const c = new GpuKVCache({ ...spec }, dtype, this.dummy, this.dummy, this.generation);
    // new buffers are zero-filled by WebGPU, as the reference cache is
    c.k = this.device.createBuffer({ size: Math.max(16, c.bytes), usage: 0x80 | 0x04 | 0x08 });
    c.v = this.device.createBuffer({ size: Math.max(16, c.bytes), usage: 0x80 | 0x04 | 0x08 });
    this.caches.add(c);
    return c;
  }
  freeKVCache(cache: KVCache): void {
    const live = this.c(cache);
    this.rec.destroyLater(live.k);
    this.rec.destroyLater(live.v);
    const c: GpuKVCache = live;
    c.k = null;
    c.v = null;
    this.caches.delete(c);
  }
  kvWrite(layer: number, k: Tensor, v: Tensor, spans: readonly SeqSpan[]): void {
    const kt = this.t(k, 'kvWrite k', 'f32');
    const vt = this.t(v, 'kvWrite v', 'f32');
    for (const s of spans) {
      const c = this.c(s.cache);
      const { kvHeads, headDim, capacity } = c.spec;
      const width = kvHeads * headDim;
      if (k.shape[1] !== width) throw new Error(`kvWrite: k [${k.shape}] but cache rows are ${width} wide`);
      if (s.pos < 0 || s.pos + s.count > capacity) {
        throw new Error(
          `kvWrite: positions [${s.pos}, ${s.pos + s.count}) exceed cache capacity ${capacity}`,
        );
      }
      this.rec.dispatch(
        at.kvWrite(c.dtype),
        [s.count, kvHeads, headDim, s.row, s.pos, c.offset(layer, 0, 0), capacity],
        [this.bind(kt), this.bind(vt), { buffer: c.k }, { buffer: c.v }],
        grid1d((s.count * width) / (c.dtype === 'f16' ? 2 : 1)),
      );
    }
  }
  attention(q: Tensor, layer: number, spans: readonly SeqSpan[], heads: number, scale: number): Tensor {
    const [M, width] = rows2(q, 'attention');
    const qt = this.t(q, 'attention q', 'f32');
    const y = this.alloc([M, width], 'f32');
    const covered = spans.reduce((n, s) => n + s.count, 0);
    if (covered < M) this.rec.copyEncoder().clearBuffer(y.buffer, 0, M * width * 4); // rows outside spans: 0
    for (const s of spans) {
      const c = this.c(s.cache);
      const { headDim, capacity } = c.spec;
      if (width !== heads * headDim) throw new Error(`attention: q [${q.shape}] for ${heads}×${headDim}`);
      if (s.pos + s.count > capacity)
        throw new Error(`attention: positions beyond cache capacity ${capacity}`);
      attendSpan(this, qt, y, c, layer, s, heads, scale);
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
    const [, width] = rows2(q, 'sparseAttention');
    const qt = this.t(q, 'sparseAttention q', 'f32');
    const c = this.c(span.cache);
    if (width !== heads * c.spec.headDim)
      throw new Error(`sparseAttention: q [${q.shape}] for ${heads}×${c.spec.headDim}`);
    const limit = span.pos + span.count;
    if (limit > c.spec.capacity) throw new Error('sparseAttention: positions beyond cache capacity');
    const out = this.alloc([span.count, width], 'f32');
    const lse = this.alloc([span.count, heads], 'f32');
    try {
      attendPlan(
        this,
        qt,
        c,
        layer,
        span,
        heads,
        scale,
        plan.ranges,
        plan.columns,
        plan.blockSize,
        limit,
        'sparseAttention',
        out,
        0,
        lse,
      );
    } catch (err) {
      this.free(out);
      this.free(lse);
      throw err;
    }
    return { out, lse };
  }
  attentionRanges(
    q: Tensor,
    layer: number,
    spans: readonly SeqSpan[],
    keys: readonly (readonly Int32Array[] | null)[],
    heads: number,
    scale: number,
  ): Tensor {
    const [M, width] = rows2(q, 'attentionRanges');
    const qt = this.t(q, 'attentionRanges q', 'f32');
    const y = this.alloc([M, width], 'f32');
    const covered = spans.reduce((n, s) => n + s.count, 0);
    if (covered < M) this.rec.copyEncoder().clearBuffer(y.buffer, 0, M * width * 4);
    for (let i = 0; i < spans.length; i++) {
      const s = spans[i];
      const c = this.c(s.cache);
      if (width !== heads * c.spec.headDim)
        throw new Error(`attentionRanges: q [${q.shape}] for ${heads}×${c.spec.headDim}`);
      if (s.pos + s.count > c.spec.capacity)
        throw new Error(`attentionRanges: positions beyond cache capacity`);
      const lists = keys[i];
      if (!lists) {
        attendSpan(this, qt, y, c, layer, s, heads, scale);
        continue;
      }
      if (lists.length !== c.spec.kvHeads)
        throw new Error(`attentionRanges: ${lists.length} lists for ${c.spec.kvHeads} kv heads`);
      const blocks = lists.map((l) => [l]);
      attendPlan(
        this,
        qt,
        c,
        layer,
        s,
        heads,
        scale,
        blocks,
        null,
        Math.max(1, s.count),
        c.spec.capacity,
        'attentionRanges',
        y,
        s.row,
        null,
      );
    }
    return y;
  }
  async kvRead(cache: KVCache, layer: number, start: number, count: number): Promise<KVBlock> {
    const c = this.c(cache);
    checkRange(c, start, count);
    const { kvHeads, headDim } = c.spec;
    const n = kvHeads * count * headDim;
    if (n === 0) return { k: new Float32Array(0), v: new Float32Array(0) };
    const eb = c.elementBytes;
    const parts: { buffer: GPUBuffer; offset: number; bytes: number }[] = [];
    for (const buf of [c.k, c.v])
      for (let h = 0; h < kvHeads; h++)
        parts.push({ buffer: buf, offset: c.offset(layer, h, start) * eb, bytes: count * headDim * eb });
    const bytes = await this.guard(this.rec.readback(parts));
    const all =
      c.dtype === 'f16'
        ? Float32Array.from(new Uint16Array(bytes), (h) => f16Table[h])
        : new Float32Array(bytes);
    return { k: all.slice(0, n), v: all.slice(n) };
  }
  kvLoad(cache: KVCache, layer: number, start: number, block: KVBlock): void {
    const c = this.c(cache);
    const { kvHeads, headDim } = c.spec;
    const count = block.k.length / (kvHeads * headDim);
    if (!Number.isInteger(count) || block.v.length !== block.k.length)
      throw new Error('kvLoad: block size mismatch');
    checkRange(c, start, count);
    if (count === 0) return;
    // staged through fresh buffers and copied in order with the recorded work (a direct writeBuffer into
    // the cache would land before commands still being recorded)
    const n = block.k.length;
    const eb = c.elementBytes;
    for (const [src, dst] of [
      [block.k, c.k],
      [block.v, c.v],
    ] as const) {
      const tmp = this.alloc([n], c.dtype, true);
      this.write(tmp.buffer, c.dtype === 'f16' ? f32ToF16(src) : src);
      const enc = this.rec.copyEncoder();
      for (let h = 0; h < kvHeads; h++)
        enc.copyBufferToBuffer(
          tmp.buffer,
          h * count * headDim * eb,
          dst,
          c.offset(layer, h, start) * eb,
          count * headDim * eb,
        );
      this.free(tmp);
    }
  }
  kvGather(cache: KVCache, layer: number, start: number, count: number): { k: Tensor; v: Tensor } {
    const c = this.c(cache);
    checkRange(c, start, count);
    const { kvHeads, headDim, capacity } = c.spec;
    const width = kvHeads * headDim;
    const k = this.alloc([count, width], 'f32');
    const v = this.alloc([count, width], 'f32');
    this.rec.dispatch(
      at.kvGather(c.dtype),
      [count, kvHeads, headDim, start, c.offset(layer, 0, 0), capacity],
      [{ buffer: c.k }, { buffer: c.v }, this.bind(k), this.bind(v)],
      grid1d(count * width),
    );
    return { k, v };
  }
}

function rows2(t: Tensor, op: string): [number, number] {
  if (t.shape.length !== 2) throw new Error(`${op}: expected a 2-D tensor, got [${t.shape}]`);
  return [t.shape[0], t.shape[1]];
}

function checkRange(c: GpuKVCache, start: number, count: number): void {
  if (start < 0 || count < 0 || start + count > c.spec.capacity) {
    throw new Error(`KV cache: positions [${start}, ${start + count}) outside capacity ${c.spec.capacity}`);
  }
}
