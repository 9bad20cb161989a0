// ggml block codecs: quantization step by step as ggml's reference row quantizers define it (values
// below are worked out by hand from those definitions), the per-element error bound that follows from
// them, and the Q4_K / Q6_K layouts through blocks packed field by field from the format description.
import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../../gpu-runner/engine/half.ts';
import { dequantize, quantize } from '../../../gpu-runner/engine/quant/codecs.ts';

const f16 = (x: number) => f32ToF16(new Float32Array([x]))[0];
const fromF16 = (bits: number) => f16ToF32(new Uint16Array([bits]))[0];

/** xorshift32 uniform in [-1, 1) */
function random(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 31 - 1;
  };
}

describe('Q8_0', () => {
  it('quantizes as quantize_row_q8_0_ref: d = amax/127 (f16), q = roundf(x/d), halves away from zero', () => {
    const x = new Float32Array(64);
    x.set([127, -63.5, 0.5, -0.5, 1.5, -2.5]);
    // second block all zeros: d = 0, every q = 0
    const b = quantize('Q8_0', x);
    expect(b.length).toBe(68);
    // d = 127/127 = 1 → f16 0x3c00; -63.5 → -64, ±0.5 → ±1, 1.5 → 2, -2.5 → -3
    expect([...b.subarray(0, 8)]).toEqual([0x00, 0x3c, 127, 256 - 64, 1, 255, 2, 256 - 3]);
    expect([...b.subarray(8, 34)].every((v) => v === 0)).toBe(true);
    expect([...b.subarray(34)].every((v) => v === 0)).toBe(true);
    expect([...dequantize('Q8_0', b, 64).subarray(0, 6)]).toEqual([127, -64, 1, -1, 2, -3]);
  });

  it('every element is within d/2 + 127·|d − f16(d)| of its value', () => {
    const r = random(7);
    const x = new Float32Array(32 * 64).map((_, i) => r() * (1 + (i >> 5)));
    const y = dequantize('Q8_0', quantize('Q8_0', x), x.length);
    for (let b = 0; b < x.length; b += 32) {
      const amax = Math.max(...x.subarray(b, b + 32).map(Math.abs));
      const d = Math.fround(amax / 127);
      const bound = d / 2 + 127 * Math.abs(d - fromF16(f16(d))) + 1e-6 * amax;
      for (let j = b; j < b + 32; j++) expect(Math.abs(x[j] - y[j])).toBeLessThanOrEqual(bound);
    }
  });
});

describe('Q4_0', () => {
  it('quantizes as quantize_row_q4_0_ref: d = (signed max-magnitude value)/−8, q = min(15, trunc(x/d + 8.5))', () => {
    const x = new Float32Array(32);
    x[5] = -4; // the largest magnitude → d = -4/-8 = 0.5, id = 2; it maps to q = trunc(-8 + 8.5) = 0
    x[0] = 3.75; // 7.5 + 8.5 = 16 → clamped to 15 → (15 − 8)·0.5 = 3.5
    x[1] = -0.25; // -0.5 + 8.5 = 8 → 0
    x[2] = 0.24; // 0.48 + 8.5 = 8.98 → truncated to 8 → 0
    x[3] = 0.25; // 0.5 + 8.5 = 9 → 0.5
    x[16] = 1; // 2 + 8.5 = 10.5 → 10 → 1
    x[17] = -1.3; // -2.6 + 8.5 = 5.9 → 5 → -1.5
    const b = quantize('Q4_0', x);
    expect(b.length).toBe(18);
    expect([b[0], b[1]]).toEqual([0x00, 0x38]); // f16(0.5)
    // byte j: element j in the low nibble, element j + 16 in the high nibble; zeros quantize to 8
    expect(b[2 + 0]).toBe(15 | (10 << 4));
    expect(b[2 + 1]).toBe(8 | (5 << 4));
    expect(b[2 + 2]).toBe(0x88);
    expect(b[2 + 3]).toBe(9 | (8 << 4));
    expect(b[2 + 5]).toBe(0 | (8 << 4));
    const y = dequantize('Q4_0', b, 32);
    expect([y[0], y[1], y[2], y[3], y[5], y[16], y[17]]).toEqual([3.5, 0, 0, 0.5, -4, 1, -1.5]);
  });

  it('a positive extreme gives a negative d and still maps exactly', () => {
    const x = new Float32Array(32);
    x[9] = 4;
    x[10] = -1;
    const b = quantize('Q4_0', x);
    expect([b[0], b[1]]).toEqual([0x00, 0xb8]); // f16(-0.5)
    const y = dequantize('Q4_0', b, 32);
    expect(y[9]).toBe(4);
    expect(y[10]).toBe(-1);
  });

  it('every element is within |d|/2 of its value, |d| where x/d > 7.5 is clamped to q = 15 (+ f16 rounding of d)', () => {
    const r = random(11);
    const x = new Float32Array(32 * 64).map(() => r() * 3);
    const y = dequantize('Q4_0', quantize('Q4_0', x), x.length);
    for (let b = 0; b < x.length; b += 32) {
      let max = 0;
      for (let j = b; j < b + 32; j++) if (Math.abs(x[j]) > Math.abs(max)) max = x[j];
      const d = Math.fround(max / -8);
      const slack = 8 * Math.abs(d - fromF16(f16(d))) + 1e-6 * Math.abs(max);
      for (let j = b; j < b + 32; j++) {
        const step = x[j] / d > 7.5 ? Math.abs(d) : Math.abs(d) / 2;
        expect(Math.abs(x[j] - y[j])).toBeLessThanOrEqual(step + slack);
      }
    }
  });

  it('refuses a length that is not whole blocks', () => {
    expect(() => quantize('Q4_0', new Float32Array(40))).toThrow(/multiple of 32/);
    expect(() => dequantize('Q8_0', new Uint8Array(33), 32)).toThrow(/need 34 bytes/);
  });
});

describe('Q4_K', () => {
  it('decodes a block packed from its description: x = d·scale_j·q − dmin·min_j per 32-element sub-block', () => {
    const sc = [1, 2, 3, 4, 5, 6, 7, 63];
    const mn = [0, 1, 2, 3, 16, 17, 33, 63];
    const b = new Uint8Array(144);
    const v = new DataView(b.buffer);
    v.setUint16(0, f16(1), true); // d
    v.setUint16(2, f16(0.5), true); // dmin
    // 12 bytes of 6-bit pairs: sub-blocks 0–3 in the low 6 bits of bytes 0–3 (scale) and 4–7 (min);
    // 4–7 as nibbles of bytes 8–11 (scale low, min high) with their top 2 bits in the top bits of 0–7
    for (let j = 0; j < 4; j++) {
      b[4 + j] = sc[j] | ((sc[j + 4] >> 4) << 6);
      b[4 + j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
      b[4 + j + 8] = (sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4);
    }
    // nibbles: per 64 elements 32 bytes, the first 32 elements low nibbles, the next 32 high nibbles
    const q = (e: number) => (e * 5) % 16;
    for (let e = 0; e < 256; e++) {
      const byte = 16 + 32 * (e >> 6) + (e & 31);
      b[byte] |= (e & 63) < 32 ? q(e) : q(e) << 4;
    }
    const y = dequantize('Q4_K', b, 256);
    for (let e = 0; e < 256; e++) {
      const j = e >> 5;
      expect(y[e]).toBe(Math.fround(sc[j] * q(e) - 0.5 * mn[j]));
    }
  });
});

describe('Q6_K', () => {
  it('decodes a block packed from its description: x = d·scale_k·(q − 32) per 16-element sub-block', () => {
    const b = new Uint8Array(210);
    const v = new DataView(b.buffer);
    const q = (e: number) => (e * 7 + 3) % 64;
    for (let e = 0; e < 256; e++) {
      // per 128 elements: 64 bytes of low 4 bits, 32 bytes of high 2 bits; element 32g + l of the half
      // sits in byte l (g even) or l + 32 (g odd) of the low bits, low nibble for g < 2, and in bits
      // 2g..2g+1 of high-bit byte l
      const n = e >> 7;
      const g = (e & 127) >> 5;
      const l = e & 31;
      const lo = 64 * n + l + (g & 1 ? 32 : 0);
      b[lo] |= g < 2 ? q(e) & 0xf : (q(e) & 0xf) << 4;
      b[128 + 32 * n + l] |= (q(e) >> 4) << (2 * g);
    }
    for (let k = 0; k < 16; k++) v.setInt8(192 + k, k - 8);
    v.setUint16(208, f16(0.25), true);
    const y = dequantize('Q6_K', b, 256);
    for (let e = 0; e < 256; e++) expect(y[e]).toBe(0.25 * ((e >> 4) - 8) * (q(e) - 32));
  });
});
