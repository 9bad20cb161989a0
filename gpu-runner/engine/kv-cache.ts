// A sequence's preallocated KV cache plus how much of it is filled. The storage lives on the backend
// (k, v: [layer][kv_head][pos][head_dim], post-RoPE keys); this tracks the valid length and gives
// position-range access for chunk KV artifacts (read to host, load from host).
import type { Backend, KVBlock, KVCache } from './backends/types.ts';
import type { ModelConfig } from './model-config.ts';

export class SequenceKV {
  readonly backend: Backend;
  readonly cache: KVCache;
  /** Positions [0, length) hold valid K/V. */
  length = 0;
  #freed = false;

  constructor(backend: Backend, cfg: ModelConfig, capacity: number) {
    this.backend = backend;
    this.cache = backend.createKVCache({
      layers: cfg.layers,
      kvHeads: cfg.kvHeads,
      headDim: cfg.headDim,
      capacity,
    });
  }

  get capacity(): number {
    return this.cache.spec.capacity;
  }

  /** Throws unless `count` more positions fit. */
  ensureRoom(count: number): void {
    if (this.#freed) throw new Error('KV cache used after free()');
    if (this.length + count > this.capacity) {
      throw new Error(`KV cache full: ${this.length} + ${count} positions exceed capacity ${this.capacity}`);
    }
  }

  /** K/V of `layer` at positions [start, start + count) on the host: [kv_head][count][head_dim] each. */
  read(layer: number, start: number, count: number): Promise<KVBlock> {
    if (start + count > this.length)
      throw new Error(`KV read [${start}, ${start + count}) beyond length ${this.length}`);
    return this.backend.kvRead(this.cache, layer, start, count);
  }

  /** Writes K/V of `layer` at positions [start, start + count) from the host; extends length if needed. */
  load(layer: number, start: number, block: KVBlock): void {
    const { kvHeads, headDim } = this.cache.spec;
    const count = block.k.length / (kvHeads * headDim);
    if (start > this.length)
      throw new Error(`KV load at ${start} would leave a gap after length ${this.length}`);
    this.backend.kvLoad(this.cache, layer, start, block);
    this.length = Math.max(this.length, start + count);
  }

  /**
   * Copies every layer's positions [0, other.length) of another cache on the device into this empty one
   * (growing a sequence's cache: no round trip through the host).
   */
  copyFrom(other: SequenceKV): void {
    if (this.length !== 0) throw new Error('copyFrom: the cache is not empty');
    const n = other.length;
    this.ensureRoom(n);
    const b = this.backend;
    for (let l = 0; n > 0 && l < this.cache.spec.layers; l++) {
      const { k, v } = b.kvGather(other.cache, l, 0, n);
      b.kvWrite(l, k, v, [{ cache: this.cache, row: 0, count: n, pos: 0 }]);
      b.free(k);
      b.free(v);
    }
    this.length = n;
  }

  /** Drops positions from `length` on (e.g. to reuse a shared prefix). */
  truncate(length: number): void {
    if (length < 0 || length > this.length)
      throw new Error(`truncate to ${length} outside [0, ${this.length}]`);
    this.length = length;
  }

  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.backend.freeKVCache(this.cache);
  }
}
