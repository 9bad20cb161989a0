// Quantize / dequantize ggml block formats (layouts in blocks.ts). Quantization follows ggml's reference
// row quantizers (quantize_row_q8_0_ref, quantize_row_q4_0_ref) step by step in f32 — every intermediate
// is rounded with Math.fround where C rounds a float — so the blocks are bit-identical to ggml's.
// Dequantization follows ggml's dequantize_row_* with the same operation order.
import { f16Table, f32ToF16 } from '../half.ts';
import { BLOCK_LAYOUTS, type QuantType, quantBytes } from './blocks.ts';

const f = Math.fround;
const F16_ONE = new Float32Array(1);
const F16_BITS = new Uint16Array(1);

/** f32 → f16 bits (round to nearest even, as GGML_FP32_TO_FP16 does on hardware with F16C). */
function toF16(x: number): number {
  F16_ONE[0] = x;
  F16_BITS[0] = f32ToF16(F16_ONE)[0];
  return F16_BITS[0];
}

/** C roundf: halfway cases away from zero. */
function roundAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Q8_0: per block of 32, d = amax/127, q = roundf(x/d). x: [n], n % 32 == 0. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array(quantBytes('Q8_0', x.length));
  const view = new DataView(out.buffer);
  for (let b = 0, o = 0; b < x.length; b += 32, o += 34) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    view.setUint16(o, toF16(d), true);
    for (let j = 0; j < 32; j++) view.setInt8(o + 2 + j, roundAway(f(x[b + j] * id)));
  }
  return out;
}

/**
 * Q4_0: per block of 32, d = (the signed value of largest magnitude) / −8, q = min(15, trunc(x/d + 8.5)),
 * so the extreme value maps to q = 0 exactly and the range [−8d, 7d] is used.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array(quantBytes('Q4_0', x.length));
  const view = new DataView(out.buffer);
  for (let b = 0, o = 0; b < x.length; b += 32, o += 18) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f(max / -8);
    const id = d ? f(1 / d) : 0;
    view.setUint16(o, toF16(d), true);
    for (let j = 0; j < 16; j++) {
      const x0 = f(x[b + j] * id);
      const x1 = f(x[b + 16 + j] * id);
      const q0 = Math.min(15, Math.trunc(f(x0 + 8.5)));
      const q1 = Math.min(15, Math.trunc(f(x1 + 8.5)));
      out[o + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

function dequantQ8_0(src: Uint8Array, out: Float32Array): void {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0, o = 0; b < out.length; b += 32, o += 34) {
    const d = f16Table[view.getUint16(o, true)];
    for (let j = 0; j < 32; j++) out[b + j] = view.getInt8(o + 2 + j) * d;
  }
}

function dequantQ4_0(src: Uint8Array, out: Float32Array): void {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0, o = 0; b < out.length; b += 32, o += 18) {
    const d = f16Table[view.getUint16(o, true)];
    for (let j = 0; j < 16; j++) {
      const byte = src[o + 2 + j];
      out[b + j] = ((byte & 0xf) - 8) * d;
      out[b + 16 + j] = ((byte >> 4) - 8) * d;
    }
  }
}

/** Q4_K's 6-bit (scale, min) of sub-block j (0..7) from the 12 packed bytes at `s`. */
function scaleMinK4(src: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [src[s + j] & 63, src[s + j + 4] & 63];
  return [
    (src[s + j + 4] & 0xf) | ((src[s + j - 4] >> 6) << 4),
    (src[s + j + 4] >> 4) | ((src[s + j] >> 6) << 4),
  ];
}

function dequantQ4_K(src: Uint8Array, out: Float32Array): void {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0, o = 0; b < out.length; b += 256, o += 144) {
    const d = f16Table[view.getUint16(o, true)];
    const dmin = f16Table[view.getUint16(o + 2, true)];
    const scales = o + 4;
    let q = o + 16;
    let y = b;
    for (let j = 0, is = 0; j < 256; j += 64, is += 2) {
      const [sc1, m1] = scaleMinK4(src, scales, is);
      const [sc2, m2] = scaleMinK4(src, scales, is + 1);
      const d1 = f(d * sc1);
      const min1 = f(dmin * m1);
      const d2 = f(d * sc2);
      const min2 = f(dmin * m2);
      for (let l = 0; l < 32; l++) out[y++] = f(d1 * (src[q + l] & 0xf)) - min1;
      for (let l = 0; l < 32; l++) out[y++] = f(d2 * (src[q + l] >> 4)) - min2;
      q += 32;
    }
  }
}

function dequantQ6_K(src: Uint8Array, out: Float32Array): void {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0, o = 0; b < out.length; b += 256, o += 210) {
    const d = f16Table[view.getUint16(o + 208, true)];
    let ql = o;
    let qh = o + 128;
    let sc = o + 192;
    for (let n = 0; n < 256; n += 128) {
      const y = b + n;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = src[qh + l];
        const q1 = ((src[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[y + l] = f(d * view.getInt8(sc + is)) * q1;
        out[y + l + 32] = f(d * view.getInt8(sc + is + 2)) * q2;
        out[y + l + 64] = f(d * view.getInt8(sc + is + 4)) * q3;
        out[y + l + 96] = f(d * view.getInt8(sc + is + 6)) * q4;
      }
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

const DEQUANT: Record<QuantType, (src: Uint8Array, out: Float32Array) => void> = {
  Q8_0: dequantQ8_0,
  Q4_0: dequantQ4_0,
  Q4_K: dequantQ4_K,
  Q6_K: dequantQ6_K,
};

/** Dequantizes `n` elements of `type` from `src` (exactly quantBytes(type, n) bytes) to f32. */
export function dequantize(type: QuantType, src: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  dequantizeInto(type, src, out);
  return out;
}

/** As dequantize, into `out` (its length is the element count): a row at a time without allocating. */
export function dequantizeInto(type: QuantType, src: Uint8Array, out: Float32Array): void {
  const want = quantBytes(type, out.length);
  if (src.byteLength !== want)
    throw new Error(`${type}: ${out.length} elements need ${want} bytes, got ${src.byteLength}`);
  DEQUANT[type](src, out);
}

/** Quantizes f32 data (length a multiple of 32) to Q8_0 or Q4_0 blocks. */
export function quantize(type: 'Q8_0' | 'Q4_0', x: Float32Array): Uint8Array {
  if (x.length % BLOCK_LAYOUTS[type].blockSize !== 0)
    throw new Error(`${type}: ${x.length} elements is not a multiple of 32`);
  return type === 'Q8_0' ? quantizeQ8_0(x) : quantizeQ4_0(x);
}
