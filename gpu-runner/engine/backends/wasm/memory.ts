// The backend's device memory: one shared WebAssembly.Memory (grows on demand, up to 4 GiB) with a
// first-fit allocator over byte ranges (64-byte aligned, free neighbours coalesced). Offsets are what
// kernels take as pointers. Typed views are re-created when the memory has grown.
import { HEAP_BASE } from './kernel-names.ts';

const ALIGN = 64;
const PAGE = 65536;
const MAX_PAGES = 65536;
/** Bytes a shared memory reserves up front (its declared maximum: shared memories never move). */
export const MAX_MEMORY_BYTES = MAX_PAGES * PAGE;

export function createSharedMemory(): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
}

export class DeviceMemory {
  readonly memory: WebAssembly.Memory;
  /** free ranges sorted by offset: [offset, size] */
  private free: Array<[number, number]> = [];
  private top = HEAP_BASE;
  private readonly sizes = new Map<number, number>();
  private buf: ArrayBufferLike | null = null;
  private f32v = new Float32Array(0);
  private i32v = new Int32Array(0);
  private u16v = new Uint16Array(0);
  private u8v = new Uint8Array(0);
  /** bytes currently allocated */
  used = 0;

  constructor(memory: WebAssembly.Memory) {
    this.memory = memory;
  }

  alloc(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const [off, sz] = this.free[i];
      if (sz < size) continue;
      if (sz === size) this.free.splice(i, 1);
      else this.free[i] = [off + size, sz - size];
      this.sizes.set(off, size);
      this.used += size;
      return off;
    }
    const off = this.top;
    const end = off + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const need = Math.ceil((end - have) / PAGE);
      const pages = have / PAGE;
      // grow geometrically (≥ 1/8 of the current size) so many small allocations stay cheap
      const grow = Math.min(MAX_PAGES - pages, Math.max(need, Math.ceil(pages / 8)));
      if (grow < need) throw new Error(`wasm backend: out of memory (${end} bytes > 4 GiB)`);
      this.memory.grow(grow);
    }
    this.top = end;
    this.sizes.set(off, size);
    this.used += size;
    return off;
  }

  release(off: number): void {
    const size = this.sizes.get(off);
    if (size === undefined) throw new Error(`wasm backend: free of unknown offset ${off}`);
    this.sizes.delete(off);
    this.used -= size;
    // insert keeping order, then merge with neighbours
    let lo = 0;
    let hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.free[mid][0] < off) lo = mid + 1;
      else hi = mid;
    }
    this.free.splice(lo, 0, [off, size]);
    if (lo + 1 < this.free.length && off + size === this.free[lo + 1][0]) {
      this.free[lo][1] += this.free[lo + 1][1];
      this.free.splice(lo + 1, 1);
    }
    if (lo > 0 && this.free[lo - 1][0] + this.free[lo - 1][1] === off) {
      this.free[lo - 1][1] += this.free[lo][1];
      this.free.splice(lo, 1);
      lo--;
    }
    // a free range that ends at the top gives its bytes back to the bump pointer
    const last = this.free[this.free.length - 1];
    if (last && last[0] + last[1] === this.top) {
      this.top = last[0];
      this.free.pop();
    }
  }

  private refresh(): void {
    const b = this.memory.buffer;
    if (b === this.buf && this.u8v.byteLength === b.byteLength) return;
    this.buf = b;
    this.f32v = new Float32Array(b);
    this.i32v = new Int32Array(b);
    this.u16v = new Uint16Array(b);
    this.u8v = new Uint8Array(b);
  }
  get f32(): Float32Array {
    this.refresh();
    return this.f32v;
  }
  get i32(): Int32Array {
    this.refresh();
    return this.i32v;
  }
  get u16(): Uint16Array {
    this.refresh();
    return this.u16v;
  }
  get u8(): Uint8Array {
    this.refresh();
    return this.u8v;
  }
}
