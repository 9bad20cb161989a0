// Device storage of the wasm backend: tensors and KV caches are byte ranges of the runtime's shared
// memory; these helpers resolve the Backend interface's opaque handles to them.
import type { DType, KVCache, KVCacheSpec, Tensor } from '../types.ts';
import type { DeviceMemory } from './memory.ts';

export const BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4 };

export class WasmTensor implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  /** byte offset in the runtime memory; -1 once freed */
  off: number;
  constructor(shape: readonly number[], dtype: DType, off: number) {
    this.shape = shape;
    this.dtype = dtype;
    this.size = shape.reduce((a, b) => a * b, 1);
    this.off = off;
  }
}

// k, v: [layer][kv_head][pos][head_dim] f32, each at its own offset
export class WasmKVCache implements KVCache {
  readonly spec: KVCacheSpec;
  k: number;
  v: number;
  constructor(spec: KVCacheSpec, k: number, v: number) {
    this.spec = spec;
    this.k = k;
    this.v = v;
  }
  /** byte offset of (layer, head, pos) from the start of k or v */
  offset(layer: number, head: number, pos: number): number {
    const { kvHeads, capacity, headDim } = this.spec;
    return (((layer * kvHeads + head) * capacity + pos) * headDim) << 2;
  }
}

export function rows2(t: Tensor, op: string): [number, number] {
  if (t.shape.length !== 2) throw new Error(`wasm ${op}: expected a 2-D tensor, got [${t.shape}]`);
  return [t.shape[0], t.shape[1]];
}

export function asTensor(t: Tensor, what: string, dtype?: DType): WasmTensor {
  if (!(t instanceof WasmTensor)) throw new Error(`wasm backend: ${what} is a tensor from another backend`);
  if (t.off < 0) throw new Error(`wasm backend: ${what} used after free()`);
  if (dtype && t.dtype !== dtype) throw new Error(`wasm backend: ${what} must be ${dtype}, got ${t.dtype}`);
  return t;
}

export function asCache(c: KVCache): WasmKVCache {
  if (!(c instanceof WasmKVCache)) throw new Error('wasm backend: KV cache from another backend');
  if (c.k < 0) throw new Error('wasm backend: KV cache used after freeKVCache()');
  return c;
}

export function allocTensor(mem: DeviceMemory, shape: readonly number[], dtype: DType): WasmTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return new WasmTensor([...shape], dtype, mem.alloc(n * BYTES[dtype]));
}
