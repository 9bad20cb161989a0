// Device storage of the wasm backend: tensors and KV caches are byte ranges of the runtime's shared
// memory; these helpers resolve the Backend interface's opaque handles to them.
import type { DType, KVCache, KVCacheSpec, SeqSpan, Tensor } from '../types.ts';
import type { DeviceMemory } from './memory.ts';
import { type AttentionArgs, HALF_IEEE } from './runtime.ts';

export const BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4 };

export class WasmTensor implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  /** byte offset in the runtime memory; -1 once freed */
  off: number;
  /** f16 only: the kernels' exponent multiplier (HALF_PRESCALED when stored by prescaleHalves) */
  halfScale: number;
  constructor(shape: readonly number[], dtype: DType, off: number, halfScale = HALF_IEEE) {
    this.shape = shape;
    this.dtype = dtype;
    this.size = shape.reduce((a, b) => a * b, 1);
    this.off = off;
    this.halfScale = halfScale;
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
  /** The attention kernel's view of one layer of this cache: K/V base offsets, geometry and strides. */
  layerArgs(
    layer: number,
  ): Pick<AttentionArgs, 'k' | 'v' | 'kvHeads' | 'headDim' | 'kvHeadStride' | 'kvPosStride'> {
    const { kvHeads, capacity, headDim } = this.spec;
    const base = this.offset(layer, 0, 0);
    return {
      k: this.k + base,
      v: this.v + base,
      kvHeads,
      headDim,
      kvHeadStride: capacity * headDim,
      kvPosStride: headDim,
    };
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

/**
 * One span of q checked against its cache (q's width is heads × the cache's headDim, the span's positions
 * fit its capacity), and the attention kernel's dense causal arguments for the span's rows, all but where
 * the output goes: q from the span's first row, K/V of `layer`, keys 0..span.pos+span.count.
 */
export function spanAttentionArgs(
  qt: WasmTensor,
  width: number,
  span: SeqSpan,
  layer: number,
  heads: number,
  scale: number,
  op: string,
): { c: WasmKVCache; args: Omit<AttentionArgs, 'out'> } {
  const c = asCache(span.cache);
  const { headDim, capacity } = c.spec;
  if (width !== heads * headDim) throw new Error(`${op}: q [${qt.shape}] for ${heads}×${headDim}`);
  const nk = span.pos + span.count;
  if (nk > capacity) throw new Error(`${op}: positions beyond cache capacity ${capacity}`);
  const args = {
    q: qt.off + span.row * width * 4,
    ...c.layerArgs(layer),
    nq: span.count,
    heads,
    scale,
    qpos0: span.pos,
    nk,
  };
  return { c, args };
}
