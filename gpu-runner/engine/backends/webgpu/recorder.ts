/// <reference types="@webgpu/types" />
// Command batching: every op of a step is recorded into one command encoder (dispatches share one
// compute pass until a copy needs the encoder), its parameters go into one uniform arena written with a
// single queue.writeBuffer, and the batch is submitted only when a readback needs it (or the arena is
// full). Pipelines are compiled once per kernel source and cached.
import type { BufferPool } from './buffers.ts';

/** A kernel: WGSL source whose entry point is `main`; params at @group(0) @binding(0) as a uniform. */
export interface Kernel {
  /** Unique name (cache key together with the source). */
  name: string;
  wgsl: string;
  /** Parameter struct fields in order: u = u32, i = i32, f = f32 (each 4 bytes). */
  params: string;
}

/** A storage binding: a whole buffer, or the first `size` bytes of it. */
export interface Binding {
  buffer: GPUBuffer;
  size?: number;
}

const ARENA_BYTES = 1 << 20;
const SLOT = 256; // minUniformBufferOffsetAlignment is ≤ 256 everywhere

export class Recorder {
  private readonly device: GPUDevice;
  private readonly pool: BufferPool;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly arena: GPUBuffer;
  private readonly arenaHost = new ArrayBuffer(ARENA_BYTES);
  private arenaUsed = 0;
  /** Buffers to destroy once the batch that last used them is submitted. */
  private readonly doomed: GPUBuffer[] = [];
  /** Dispatches recorded and batches submitted so far (stats, tests). */
  dispatches = 0;
  submits = 0;
  /** Bytes copied back to the host so far. */
  readbackBytes = 0;

  constructor(device: GPUDevice, pool: BufferPool) {
    this.device = device;
    this.pool = pool;
    this.arena = device.createBuffer({ size: ARENA_BYTES, usage: 0x40 | 0x08 }); // UNIFORM | COPY_DST
  }

  private pipeline(k: Kernel): GPUComputePipeline {
    const key = `${k.name}\n${k.wgsl}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code: k.wgsl, label: k.name });
      p = this.device.createComputePipeline({
        layout: 'auto',
        compute: { module, entryPoint: 'main' },
        label: k.name,
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  private enc(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.enc().beginComputePass();
    return this.pass;
  }

  /** The encoder for copies (ends the open compute pass). */
  copyEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    return this.enc();
  }

  /** Records one dispatch of `k` with `values` (k.params order) over `buffers` (bindings 1..n). */
  dispatch(
    k: Kernel,
    values: readonly number[],
    buffers: readonly Binding[],
    groups: readonly [number, number?, number?],
  ): void {
    const [x, y = 1, z = 1] = groups;
    if (x === 0 || y === 0 || z === 0) return;
    if (values.length !== k.params.length)
      throw new Error(`${k.name}: ${values.length} params for '${k.params}'`);
    if (this.arenaUsed + SLOT > ARENA_BYTES) this.flush();
    const off = this.arenaUsed;
    this.arenaUsed += SLOT;
    const u = new Uint32Array(this.arenaHost, off, k.params.length);
    const i = new Int32Array(this.arenaHost, off, k.params.length);
    const f = new Float32Array(this.arenaHost, off, k.params.length);
    for (let j = 0; j < values.length; j++) {
      const t = k.params[j];
      if (t === 'f') f[j] = values[j];
      else if (t === 'i') i[j] = values[j];
      else u[j] = values[j];
    }
    const pipe = this.pipeline(k);
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.arena, offset: off, size: Math.max(16, k.params.length * 4) } },
    ];
    buffers.forEach((b, j) => {
      entries.push({
        binding: j + 1,
        resource: b.size ? { buffer: b.buffer, size: b.size } : { buffer: b.buffer },
      });
    });
    const bg = this.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
    const pass = this.computePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
  }

  /** Destroys `buf` after the current batch is submitted. */
  destroyLater(buf: GPUBuffer): void {
    this.doomed.push(buf);
  }

  /** Submits everything recorded so far (with its parameters). */
  flush(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (this.arenaUsed > 0) this.device.queue.writeBuffer(this.arena, 0, this.arenaHost, 0, this.arenaUsed);
    if (this.encoder) {
      this.device.queue.submit([this.encoder.finish()]);
      this.submits++;
    }
    this.encoder = null;
    this.arenaUsed = 0;
    this.pool.submitted();
    for (const b of this.doomed.splice(0)) b.destroy();
  }

  /** Copies `bytes` from each source into one mappable buffer, submits, and resolves with the bytes. */
  async readback(
    parts: readonly { buffer: GPUBuffer; offset: number; bytes: number }[],
  ): Promise<ArrayBuffer> {
    const total = parts.reduce((n, p) => n + p.bytes, 0);
    this.readbackBytes += total;
    const staging = this.device.createBuffer({ size: Math.max(4, total), usage: 0x01 | 0x08 }); // MAP_READ | COPY_DST
    const enc = this.copyEncoder();
    let o = 0;
    for (const p of parts) {
      if (p.bytes > 0) enc.copyBufferToBuffer(p.buffer, p.offset, staging, o, p.bytes);
      o += p.bytes;
    }
    this.flush();
    try {
      await staging.mapAsync(0x0001); // GPUMapMode.READ
      return staging.getMappedRange(0, total).slice(0);
    } finally {
      if (staging.mapState === 'mapped') staging.unmap();
      staging.destroy();
    }
  }

  dispose(): void {
    this.pass = null;
    this.encoder = null;
    this.arena.destroy();
    for (const b of this.doomed.splice(0)) b.destroy();
  }
}
