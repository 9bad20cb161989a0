/// <reference types="@webgpu/types" />
// Device memory of the webgpu backend: tensors and KV caches as GPUBuffers, recycled through a pool
// of size classes. A freed buffer may be handed to a later op's output at once (the command stream is
// ordered), but to a host write (queue.writeBuffer runs before the commands still being recorded) only
// after the batch that last used it has been submitted.
import type { DType } from '../dtypes.ts';
import type { KVCacheSpec } from '../types.ts';

export const USAGE_STORAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST

export class GpuTensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Elements. */
  readonly size: number;
  buffer: GPUBuffer | null;
  /** Bytes the data takes (f16: 2 per element, rounded up to 4). */
  readonly bytes: number;
  /** Host copy of an uploaded tensor: restores it after device loss. */
  host: Float32Array | Uint16Array | Int32Array | Uint8Array | null = null;
  /** Device generation the buffer belongs to (after a device loss older tensors are dead). */
  generation: number;
  constructor(shape: readonly number[], dtype: DType, buffer: GPUBuffer, generation: number) {
    this.shape = shape;
    this.dtype = dtype;
    this.size = shape.reduce((a, b) => a * b, 1);
    this.bytes = tensorBytes(this.size, dtype);
    this.buffer = buffer;
    this.generation = generation;
  }
}

export function tensorBytes(size: number, dtype: DType): number {
  return dtype === 'f16' ? Math.ceil(size / 2) * 4 : size * 4;
}

// k, v: [layer][kv_head][pos][head_dim], f32 or f16 (two halves per u32 word), one buffer each
export class GpuKVCache {
  readonly spec: KVCacheSpec;
  readonly dtype: 'f32' | 'f16';
  k: GPUBuffer | null;
  v: GPUBuffer | null;
  generation: number;
  constructor(
    spec: KVCacheSpec,
    dtype: 'f32' | 'f16',
    k: GPUBuffer | null,
    v: GPUBuffer | null,
    generation: number,
  ) {
    this.spec = spec;
    this.dtype = dtype;
    this.k = k;
    this.v = v;
    this.generation = generation;
  }
  /** Bytes per element. */
  get elementBytes(): number {
    return this.dtype === 'f16' ? 2 : 4;
  }
  /** Element offset of (layer, head, pos). */
  offset(layer: number, head: number, pos: number): number {
    const { kvHeads, capacity, headDim } = this.spec;
    return ((layer * kvHeads + head) * capacity + pos) * headDim;
  }
  get bytes(): number {
    const s = this.spec;
    return Math.ceil((s.layers * s.kvHeads * s.capacity * s.headDim * this.elementBytes) / 4) * 4;
  }
}

/** Size class: the next of 2^k, 1.5·2^k at or above `bytes` (≥ 256). */
export function sizeClass(bytes: number): number {
  let c = 256;
  while (c < bytes) {
    const mid = c + c / 2;
    if (mid >= bytes) return mid;
    c *= 2;
  }
  return c;
}

export class BufferPool {
  private readonly device: GPUDevice;
  /** Free buffers safe for any use, by size class. */
  private readonly ready = new Map<number, GPUBuffer[]>();
  /** Freed since the last submit: safe for op outputs only. */
  private readonly recent = new Map<number, GPUBuffer[]>();
  private readonly live = new Set<GPUBuffer>();
  bytesLive = 0;

  constructor(device: GPUDevice) {
    this.device = device;
  }

  /** A buffer of at least `bytes`; `hostWrite` when queue.writeBuffer will fill it. */
  acquire(bytes: number, hostWrite: boolean): GPUBuffer {
    const cls = sizeClass(Math.max(4, bytes));
    const buf = this.ready.get(cls)?.pop() ?? (hostWrite ? undefined : this.recent.get(cls)?.pop());
    if (buf) {
      this.live.add(buf);
      return buf;
    }
    const b = this.device.createBuffer({ size: cls, usage: USAGE_STORAGE });
    this.live.add(b);
    this.bytesLive += cls;
    return b;
  }

  release(buf: GPUBuffer): void {
    if (!this.live.delete(buf)) throw new Error('webgpu backend: buffer released twice');
    const list = this.recent.get(buf.size) ?? [];
    list.push(buf);
    this.recent.set(buf.size, list);
  }

  /** After a submit: everything freed before it may now be written from the host too. */
  submitted(): void {
    for (const [cls, list] of this.recent) {
      const r = this.ready.get(cls) ?? [];
      r.push(...list);
      this.ready.set(cls, r);
    }
    this.recent.clear();
  }

  /** Destroys the free buffers (keeps live ones). */
  trim(): void {
    for (const m of [this.ready, this.recent]) {
      for (const list of m.values()) for (const b of list) this.destroy(b);
      m.clear();
    }
  }

  destroyAll(): void {
    this.trim();
    for (const b of this.live) this.destroy(b);
    this.live.clear();
  }

  private destroy(b: GPUBuffer): void {
    this.bytesLive -= b.size;
    b.destroy();
  }
}
