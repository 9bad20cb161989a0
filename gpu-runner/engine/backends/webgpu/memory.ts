// The webgpu backend's device state: the GPUDevice and what lives on it (buffer pool, command recorder,
// bindings for unused kernel slots), memory (upload, readback, free), and device loss: reads in flight
// fail with DeviceLostError, then a new device is opened and the uploaded tensors (weights) restored from
// their host copies; tensors computed on the lost device and KV caches' contents are gone.
import { BackendUnavailableError } from '../../errors.ts';
import type { DType, HostTensor } from '../dtypes.ts';
import { BufferPool, type GpuKVCache, GpuTensor, tensorBytes } from './buffers.ts';
import { type DeviceInfo, openDevice, type WebGPUMode } from './device.ts';
import { type Binding, Recorder } from './recorder.ts';

export class DeviceLostError extends BackendUnavailableError {
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

/** A tensor handle whose buffer is alive on the current device. */
export type Live = GpuTensor & { buffer: GPUBuffer };
export type LiveCache = GpuKVCache & { k: GPUBuffer; v: GPUBuffer };

const CACHE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST

export class WebGPUDevice {
  device: GPUDevice;
  info: DeviceInfo;
  pool: BufferPool;
  rec: Recorder;
  readonly opts: WebGPUOptions;
  /** Bumped on every device loss; tensors of older generations are dead. */
  generation = 0;
  readonly uploads = new Set<GpuTensor>();
  readonly caches = new Set<GpuKVCache>();
  private readonly inflight = new Set<(err: Error) => void>();
  private disposed = false;
  private recovering: Promise<void> | null = null;
  /** Set when no new device could be opened after a loss: every later call fails with it. */
  failed: DeviceLostError | null = null;
  /** Bindings for kernels' unused inputs and outputs (two: one buffer may not be both in a dispatch). */
  private dummy: GPUBuffer;
  private dummyW: GPUBuffer;
  /** Called after a device loss was recovered (the runner logs it). */
  onDeviceLost: ((reason: string) => void) | null = null;

  constructor(dev: { device: GPUDevice; info: DeviceInfo }, opts: WebGPUOptions) {
    this.opts = opts;
    this.device = dev.device;
    this.info = dev.info;
    this.pool = new BufferPool(this.device);
    this.rec = new Recorder(this.device, this.pool);
    this.dummy = this.device.createBuffer({ size: 16, usage: CACHE_USAGE });
    this.dummyW = this.device.createBuffer({ size: 16, usage: CACHE_USAGE });
    this.watch(this.device, this.generation);
  }

  /** Keys one attention workgroup takes before the key range is split over more (flash decoding). */
  get keysPerSplit(): number {
    return this.opts.keysPerSplit ?? 256;
  }
  get maxSplits(): number {
    return this.opts.maxSplits ?? 32;
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
    this.dummy = this.device.createBuffer({ size: 16, usage: CACHE_USAGE });
    this.dummyW = this.device.createBuffer({ size: 16, usage: CACHE_USAGE });
    for (const t of this.uploads) {
      if (!t.host) continue;
      t.buffer = this.pool.acquire(t.bytes, true);
      t.generation = this.generation;
      this.write(t.buffer, t.host);
    }
    for (const c of this.caches) {
      c.k = this.cacheBuffer(c.bytes);
      c.v = this.cacheBuffer(c.bytes);
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
  guard<T>(p: Promise<T>): Promise<T> {
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

  // --- handles and buffers ------------------------------------------------------------------------
  /** A handle's buffer on the current device (DeviceLostError for one computed on a lost device). */
  live(x: GpuTensor, what = 'tensor'): Live {
    if (this.failed) throw this.failed;
    if (!x.buffer) throw new Error(`webgpu backend: ${what} has no buffer`);
    if (x.generation !== this.generation)
      throw new DeviceLostError(`${what}: tensor computed on a device that was lost`);
    return x as Live;
  }
  liveCache(c: GpuKVCache): LiveCache {
    if (this.failed) throw this.failed;
    return c as LiveCache;
  }
  alloc(shape: readonly number[], dtype: DType, hostWrite = false): Live {
    const bytes = tensorBytes(
      shape.reduce((a, b) => a * b, 1),
      dtype,
    );
    return new GpuTensor(shape, dtype, this.pool.acquire(bytes, hostWrite), this.generation) as Live;
  }
  cacheBuffer(bytes: number): GPUBuffer {
    return this.device.createBuffer({ size: Math.max(16, bytes), usage: CACHE_USAGE });
  }
  write(buf: GPUBuffer, data: Float32Array | Uint16Array | Int32Array | Uint8Array): void {
    if (data.byteLength === 0) return;
    if (data.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
    } else {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(buf, 0, padded);
    }
  }
  /** A binding of exactly the tensor's bytes (so arrayLength and robustness see its real size). */
  bind(t: Live): Binding {
    return { buffer: t.buffer, size: Math.max(4, t.bytes) };
  }
  get none(): Binding {
    return { buffer: this.dummy };
  }
  get noneW(): Binding {
    return { buffer: this.dummyW };
  }
  /** A temporary i32/u32 table on the device (index lists); freed after the current batch. */
  uploadIndex(data: Int32Array | Uint32Array): Live {
    const t = this.alloc([data.length], 'i32', true);
    this.write(t.buffer, new Int32Array(data.buffer, data.byteOffset, data.length));
    return t;
  }

  // --- memory -------------------------------------------------------------------------------------
  upload(host: HostTensor): GpuTensor {
    if (this.failed) throw this.failed;
    const t = this.alloc([...host.shape], host.dtype, true);
    this.write(t.buffer, host.data);
    // uploads are restored after device loss
    if (this.opts.restoreOnLoss !== false) {
      t.host = host.data.slice();
      this.uploads.add(t);
    }
    return t;
  }
  async readback(x: GpuTensor, bytes: number): Promise<ArrayBuffer> {
    const t = this.live(x, 'read()');
    if (bytes === 0) return new ArrayBuffer(0);
    return this.guard(this.rec.readback([{ buffer: t.buffer, offset: 0, bytes }]));
  }
  free(x: GpuTensor): void {
    if (x.buffer && x.generation === this.generation) this.pool.release(x.buffer);
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
}
