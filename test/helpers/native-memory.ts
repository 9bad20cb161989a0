// Shared memory for the native kernel tests, as the wasm backend owns it: a shared WebAssembly.Memory
// (a SharedArrayBuffer) with a bump allocator; kernels get a Uint8Array over it and byte offsets.
export class TestMemory {
  readonly memory = new WebAssembly.Memory({ initial: 16, maximum: 16384, shared: true });
  private top = 64 * 1024; // offset 0 stays unused: it means "none" for bias/lse
  get u8(): Uint8Array {
    return new Uint8Array(this.memory.buffer);
  }
  get f32(): Float32Array {
    return new Float32Array(this.memory.buffer);
  }
  alloc(bytes: number): number {
    const off = this.top;
    this.top += Math.ceil(bytes / 64) * 64 + 64;
    const have = this.memory.buffer.byteLength;
    if (this.top > have) this.memory.grow(Math.ceil((this.top - have) / 65536));
    return off;
  }
  putF32(data: Float32Array): number {
    const p = this.alloc(data.length * 4);
    this.f32.set(data, p / 4);
    return p;
  }
  putBytes(data: Uint8Array): number {
    const p = this.alloc(data.length);
    this.u8.set(data, p);
    return p;
  }
  /** output buffer filled with NaN: every element the kernel must write shows up if it does not */
  out(n: number): number {
    const p = this.alloc(n * 4);
    this.f32.fill(Number.NaN, p / 4, p / 4 + n);
    return p;
  }
  getF32(p: number, n: number): Float32Array {
    return this.f32.slice(p / 4, p / 4 + n);
  }
}
