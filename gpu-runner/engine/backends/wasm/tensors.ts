// Device storage of the wasm backend: tensors and KV caches are byte ranges of the runtime's shared
// memory; the checking layer hands the kernels these handles.
import type { KVCacheSpec } from '../types.ts';
import type { DeviceMemory } from './memory.ts';
import { type AttentionArgs, HALF_IEEE } from './runtime.ts';

/** A tensor's bytes in the runtime memory. */
export class WasmTensor {
  /** byte offset in the runtime memory */
  readonly off: number;
  /** f16 only: the kernels' exponent multiplier (HALF_PRESCALED when stored by prescaleHalves) */
  readonly halfScale: number;
  constructor(off: number, halfScale = HALF_IEEE) {
    this.off = off;
    this.halfScale = halfScale;
  }
}

// k, v: [layer][kv_head][pos][head_dim] f32 (or IEEE halves: an f16 cache, the native backend's option),
// each at its own offset
export class WasmKVCache {
  readonly spec: KVCacheSpec;
  readonly k: number;
  readonly v: number;
  /** elements are IEEE halves (only the native backend's kernels read and write such a cache) */
  readonly half: boolean;
  /**
   * An int8 cache (native backend only): k / v hold int8 codes [layer][kv_head][pos][head_dim] and these
   * offsets their f32 scales [layer][kv_head][pos] (value = scale · code); null for f32 / f16 caches.
   */
  readonly scales: { k: number; v: number } | null;
  constructor(
    spec: KVCacheSpec,
    k: number,
    v: number,
    half = false,
    scales: { k: number; v: number } | null = null,
  ) {
    this.spec = spec;
    this.k = k;
    this.v = v;
    this.half = half;
    this.scales = scales;
  }
  /** the cache's element type */
  get dtype(): 'f32' | 'f16' | 'int8' {
    return this.half ? 'f16' : this.scales ? 'int8' : 'f32';
  }
  /** bytes of one element */
  get elementBytes(): number {
    return this.half ? 2 : this.scales ? 1 : 4;
  }
  /** byte offset of (layer, head, pos)'s scale from the start of scales.k or scales.v (int8 caches) */
  scaleOffset(layer: number, head: number, pos: number): number {
    const { kvHeads, capacity } = this.spec;
    return ((layer * kvHeads + head) * capacity + pos) * 4;
  }
  /** byte offset of (layer, head, pos) from the start of k or v */
  offset(layer: number, head: number, pos: number): number {
    const { kvHeads, capacity, headDim } = this.spec;
    return ((layer * kvHeads + head) * capacity + pos) * headDim * this.elementBytes;
  }
  /**
   * One layer of this cache as an attention kernel reads it: K/V base offsets, geometry, strides in elements
   * (f32 or f16; an int8 cache throws: its readers take q8View, which also gives the scales).
   */
  layerView(layer: number): Pick<
    AttentionArgs,
    'k' | 'v' | 'kvHeads' | 'headDim' | 'kvHeadStride' | 'kvPosStride'
  > & {
    half: boolean;
  } {
    if (this.scales) throw new Error('an int8 KV cache is read through q8View (native dense attention)');
    const { kvHeads, capacity, headDim } = this.spec;
    const base = this.offset(layer, 0, 0);
    return {
      k: this.k + base,
      v: this.v + base,
      kvHeads,
      headDim,
      kvHeadStride: capacity * headDim,
      kvPosStride: headDim,
      half: this.half,
    };
  }
  /**
   * One layer of an int8 cache: codes' base offsets and strides in elements (bytes), scales' base offsets
   * and the floats between kv heads' scales (one per position).
   */
  q8View(layer: number): {
    k: number;
    v: number;
    kvHeadStride: number;
    kvPosStride: number;
    ks: number;
    vs: number;
    scaleHeadStride: number;
  } {
    if (!this.scales) throw new Error(`q8View: this KV cache is ${this.dtype}, not int8`);
    const { capacity, headDim } = this.spec;
    const base = this.offset(layer, 0, 0);
    const sb = this.scaleOffset(layer, 0, 0);
    return {
      k: this.k + base,
      v: this.v + base,
      kvHeadStride: capacity * headDim,
      kvPosStride: headDim,
      ks: this.scales.k + sb,
      vs: this.scales.v + sb,
      scaleHeadStride: capacity,
    };
  }
  /** The f32 attention kernels' view of one layer (wasm's, the fused squeezed step); an f16 cache throws. */
  layerArgs(
    layer: number,
  ): Pick<AttentionArgs, 'k' | 'v' | 'kvHeads' | 'headDim' | 'kvHeadStride' | 'kvPosStride'> {
    if (this.half) throw new Error('an f16 KV cache has no f32 view: widen it first (native backend)');
    const { half: _, ...args } = this.layerView(layer);
    return args;
  }
}

/** `bytes` of fresh memory as a tensor handle. */
export function allocTensor(mem: DeviceMemory, bytes: number): WasmTensor {
  return new WasmTensor(mem.alloc(bytes));
}

/** An i32 list copied into fresh memory (≥ one entry, so an empty list still has an offset). */
export function uploadInts(mem: DeviceMemory, data: Int32Array): WasmTensor {
  const t = allocTensor(mem, Math.max(1, data.length) * 4);
  mem.i32.set(data, t.off >> 2);
  return t;
}

/**
 * half bits → bits of the same value × 2^10, or -1 where that overflows (|x| ≥ 64). Every subnormal half
 * becomes a normal one, exactly (m·2^-24 · 2^10 = m·2^-14 needs ≤ 10 mantissa bits), so the kernels'
 * widening never multiplies an f32 denormal; they undo the factor with 2^102 instead of 2^112.
 */
const PRESCALE = (() => {
  const t = new Int32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0x1f)
      t[h] = h; // inf/NaN stay
    else if (e === 0) {
      if (m === 0) t[h] = h;
      else {
        const p = 31 - Math.clz32(m); // m = 2^p · (1 + f), p ≤ 9
        t[h] = s | ((p + 1) << 10) | ((m << (10 - p)) & 0x3ff);
      }
    } else t[h] = e + 10 <= 30 ? s | ((e + 10) << 10) | m : -1;
  }
  return t;
})();

/** Halves × 2^10 (bits), or null when a value is too large to be stored that way. */
export function prescaleHalves(bits: Uint16Array): Uint16Array | null {
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const v = PRESCALE[bits[i]];
    if (v < 0) return null;
    out[i] = v;
  }
  return out;
}
