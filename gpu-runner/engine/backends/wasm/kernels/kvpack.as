// Chunk KV artifact sections → KV cache rows in one pass (gpu-runner/engine/kv/kv-codec.ts has the byte
// layouts and the reference decoder): widen f16, or dequantize int8/int4 (keys: min + step·q per channel
// and token group; values: step·q per token and channel group), and — for keys moved to a new position —
// re-rotate every rotate-half pair by Δ while the row is still in L1. Rows (kv head, token) are split
// over the threads; each writes its rows of the destination cache only.
import { argI, argP, halfMask, halfScale, halfToF32s, halvesHi, halvesLo, madd, setHalfScale, share } from './simd';

const F32: i32 = 0;
const F16: i32 = 1;
const INT8: i32 = 2;
const HALF_IEEE: f32 = reinterpret<f32>(0x77800000); // 2^112: halves as stored

// args: 0 src (the section), 1 dst (cache floats at kv head 0, first position), 2 dtype (0 f32, 1 f16,
// 2 int8, 3 int4), 3 1 = keys / 0 = values, 4 kvHeads, 5 n, 6 headDim, 7 keyGroup, 8 valueGroup,
// 9 steps (byte offset in src), 10 mins (byte offset in src), 11 code row bytes, 12 dst floats between kv
// heads, 13 Δ (i32 position delta; keys only), 14 invFreq ([headDim/2] f32; 0 = no rotation),
// 15 scratch, 16 scratch bytes per thread, 17 1 = keys stored Hadamard-rotated (int8/int4: each
// dequantized row multiplied by H/√headDim before the RoPE rotation; headDim a power of two ≥ 4).
// Rotation: angle f32(Δ · invFreq[i]), as the rope kernel.
export function kv_unpack(a: usize, part: i32, parts: i32, slot: i32): void {
  const src = argP(a, 0);
  const dst = argP(a, 1);
  const dtype = argI(a, 2);
  const isKey = argI(a, 3) == 1;
  const kvHeads = argI(a, 4);
  const n = argI(a, 5);
  const d = argI(a, 6);
  const kg = argI(a, 7);
  const vg = argI(a, 8);
  const steps = src + argP(a, 9);
  const mins = src + argP(a, 10);
  const rowBytes = argI(a, 11);
  const headStride = argI(a, 12);
  const delta = argI(a, 13);
  const freq = argP(a, 14);
  const hadamard = argI(a, 17) == 1;
  // scratch, all f32 [d]: cos[half] | sin[half]; the current key group's steps; its minima; a value
  // row's step per channel
  const cs = argP(a, 15) + <usize>slot * argP(a, 16);
  const gSteps = cs + (<usize>d << 2);
  const gMins = gSteps + (<usize>d << 2);
  const vSteps = gMins + (<usize>d << 2);
  let group = -1;
  const half = d >> 1;
  setHalfScale(HALF_IEEE);
  const rotate = isKey && freq != 0 && delta != 0;
  if (rotate) {
    const p = <f32>delta;
    for (let i = 0; i < half; i++) {
      const ang = p * load<f32>(freq + (<usize>i << 2));
      store<f32>(cs + (<usize>i << 2), Mathf.cos(ang));
      store<f32>(cs + (<usize>(half + i) << 2), Mathf.sin(ang));
    }
  }
  const groups = (n + kg - 1) / kg;
  for (let r = share(kvHeads * n, part, parts); r < share(kvHeads * n, part + 1, parts); r++) {
    const h = r / n;
    const t = r - h * n;
    const out = dst + ((<usize>h * headStride + <usize>t * d) << 2);
    if (dtype == F32) memory.copy(out, src + ((<usize>r * d) << 2), <usize>d << 2);
    else if (dtype == F16) widenHalves(src + ((<usize>r * d) << 1), out, d);
    else {
      const codes = src + <usize>r * rowBytes;
      if (isKey) {
        // a key group's steps and minima serve its kg rows: widened once, when the rows reach it
        const g = h * groups + t / kg;
        if (g != group) {
          widenHalves(steps + ((<usize>g * d) << 1), gSteps, d);
          widenHalves(mins + ((<usize>g * d) << 1), gMins, d);
          group = g;
        }
        dequantKeys(codes, gSteps, gMins, out, d, dtype == INT8);
        if (hadamard) hadamardRow(out, d);
      } else {
        rowSteps(steps + ((<usize>r * (d / vg)) << 1), vSteps, d, vg);
        dequantValues(codes, vSteps, out, d, dtype == INT8);
      }
    }
    if (rotate) rotateRow(out, cs, half);
  }
}

function widenHalves(p: usize, out: usize, d: i32): void {
  const mask = halfMask();
  const scale = halfScale();
  let c = 0;
  for (; c + 8 <= d; c += 8) {
    const v = v128.load(p + (<usize>c << 1));
    v128.store(out + (<usize>c << 2), halvesLo(v, mask, scale));
    v128.store(out + (<usize>c << 2), halvesHi(v, mask, scale), 16);
  }
  for (; c < d; c++) store<f32>(out + (<usize>c << 2), halfToF32s(load<u16>(p + (<usize>c << 1))));
}

/** Code of channel c, unsigned form: int8 byte c; int4 nibble (c < d/2: low of byte c; else high of c − d/2). */
@inline function codeAt(codes: usize, c: i32, d: i32, int8: bool): i32 {
  if (int8) return <i32>load<u8>(codes + <usize>c);
  const half = d >> 1;
  return c < half ? <i32>load<u8>(codes + <usize>c) & 15 : <i32>load<u8>(codes + <usize>(c - half)) >> 4;
}

/** x[c] = min[c] + step[c]·q[c], 4 channels from 4 unsigned codes (i32 lanes); steps, mins: f32 [d]. */
@inline function keys4(q: v128, steps: usize, mins: usize, c: i32, out: usize): void {
  const o = <usize>c << 2;
  v128.store(out + o, madd(f32x4.convert_i32x4_u(q), v128.load(steps + o), v128.load(mins + o)));
}

/** 16 u8 lanes → four i32x4 (unsigned) stored as keys for channels c..c+15. */
@inline function keys16(b: v128, steps: usize, mins: usize, c: i32, out: usize): void {
  const lo = i16x8.extend_low_i8x16_u(b);
  const hi = i16x8.extend_high_i8x16_u(b);
  keys4(i32x4.extend_low_i16x8_u(lo), steps, mins, c, out);
  keys4(i32x4.extend_high_i16x8_u(lo), steps, mins, c + 4, out);
  keys4(i32x4.extend_low_i16x8_u(hi), steps, mins, c + 8, out);
  keys4(i32x4.extend_high_i16x8_u(hi), steps, mins, c + 12, out);
}

function dequantKeys(codes: usize, steps: usize, mins: usize, out: usize, d: i32, int8: bool): void {
  let c = 0;
  if (int8) {
    for (; c + 16 <= d; c += 16) keys16(v128.load(codes + <usize>c), steps, mins, c, out);
  } else if (((d >> 1) & 15) == 0) {
    const half = d >> 1;
    const low = i8x16.splat(15);
    for (let j = 0; j < half; j += 16) {
      const b = v128.load(codes + <usize>j);
      keys16(v128.and(b, low), steps, mins, j, out);
      keys16(i8x16.shr_u(b, 4), steps, mins, half + j, out);
    }
    c = d;
  }
  for (; c < d; c++) {
    const o = <usize>c << 2;
    store<f32>(out + o, load<f32>(mins + o) + load<f32>(steps + o) * <f32>codeAt(codes, c, d, int8));
  }
}

/** A value row's steps (one f16 per vg channels) spread to one f32 per channel: no division per lane. */
function rowSteps(steps: usize, out: usize, d: i32, vg: i32): void {
  for (let g = 0; g < d / vg; g++) {
    const s = halfToF32s(load<u16>(steps + (<usize>g << 1)));
    const v = f32x4.splat(s);
    let c = g * vg;
    const end = c + vg;
    for (; c + 4 <= end; c += 4) v128.store(out + (<usize>c << 2), v);
    for (; c < end; c++) store<f32>(out + (<usize>c << 2), s);
  }
}

/** x[c] = step[c]·q[c] for 4 channels (q: signed i32 lanes; steps: f32 per channel). */
@inline function values4(q: v128, steps: usize, c: i32, out: usize): void {
  const o = <usize>c << 2;
  v128.store(out + o, f32x4.mul(f32x4.convert_i32x4_s(q), v128.load(steps + o)));
}

/** 16 i8 lanes (signed) → values for channels c..c+15. */
@inline function values16(b: v128, steps: usize, c: i32, out: usize): void {
  const lo = i16x8.extend_low_i8x16_s(b);
  const hi = i16x8.extend_high_i8x16_s(b);
  values4(i32x4.extend_low_i16x8_s(lo), steps, c, out);
  values4(i32x4.extend_high_i16x8_s(lo), steps, c + 4, out);
  values4(i32x4.extend_low_i16x8_s(hi), steps, c + 8, out);
  values4(i32x4.extend_high_i16x8_s(hi), steps, c + 12, out);
}

function dequantValues(codes: usize, steps: usize, out: usize, d: i32, int8: bool): void {
  let c = 0;
  if (int8) {
    for (; c + 16 <= d; c += 16) values16(v128.load(codes + <usize>c), steps, c, out);
  } else if (((d >> 1) & 15) == 0) {
    const half = d >> 1;
    const low = i8x16.splat(15);
    const eight = i8x16.splat(8);
    for (let j = 0; j < half; j += 16) {
      const b = v128.load(codes + <usize>j);
      values16(i8x16.sub(v128.and(b, low), eight), steps, j, out);
      values16(i8x16.sub(i8x16.shr_u(b, 4), eight), steps, half + j, out);
    }
    c = d;
  }
  for (; c < d; c++) {
    const u = codeAt(codes, c, d, int8);
    const q = int8 ? (u << 24) >> 24 : u - 8;
    store<f32>(out + (<usize>c << 2), load<f32>(steps + (<usize>c << 2)) * <f32>q);
  }
}

/** The Hadamard butterflies of strides 1 and 2 inside one 4-lane vector. */
@inline function hadamard4(v: v128): v128 {
  const s1 = f32x4.add(
    v128.shuffle<f32>(v, v, 0, 0, 2, 2),
    f32x4.mul(v128.shuffle<f32>(v, v, 1, 1, 3, 3), f32x4(1, -1, 1, -1)),
  );
  return f32x4.add(
    v128.shuffle<f32>(s1, s1, 0, 1, 0, 1),
    f32x4.mul(v128.shuffle<f32>(s1, s1, 2, 3, 2, 3), f32x4(1, 1, -1, -1)),
  );
}

/**
 * In place: row ← (H/√d)·row, H the Sylvester Hadamard matrix (kv-codec.ts hadamardRows). The butterfly
 * stages commute, so they run in register blocks: strides 1–8 on each 16-float block (shuffles inside a
 * vector, then across its four vectors), then strides 16 and up two at a time (radix 4), a last single
 * stride when their count is odd. One pass over the row per two stages.
 */
function hadamardRow(row: usize, d: i32): void {
  const scale = f32x4.splat(1 / Mathf.sqrt(<f32>d));
  if (d < 16) {
    for (let c = 0; c < d; c += 4) {
      const o = row + (<usize>c << 2);
      v128.store(o, hadamard4(f32x4.mul(v128.load(o), scale)));
    }
    if (d == 8) {
      const x = v128.load(row);
      const y = v128.load(row, 16);
      v128.store(row, f32x4.add(x, y));
      v128.store(row, f32x4.sub(x, y), 16);
    }
    return;
  }
  for (let c = 0; c < d; c += 16) {
    const o = row + (<usize>c << 2);
    const a = hadamard4(f32x4.mul(v128.load(o), scale));
    const b = hadamard4(f32x4.mul(v128.load(o, 16), scale));
    const e = hadamard4(f32x4.mul(v128.load(o, 32), scale));
    const f = hadamard4(f32x4.mul(v128.load(o, 48), scale));
    const a1 = f32x4.add(a, b);
    const b1 = f32x4.sub(a, b);
    const e1 = f32x4.add(e, f);
    const f1 = f32x4.sub(e, f);
    v128.store(o, f32x4.add(a1, e1));
    v128.store(o, f32x4.add(b1, f1), 16);
    v128.store(o, f32x4.sub(a1, e1), 32);
    v128.store(o, f32x4.sub(b1, f1), 48);
  }
  let h = 16;
  for (; h * 4 <= d; h <<= 2) {
    const hb = <usize>h << 2;
    for (let i = 0; i < d; i += h << 2)
      for (let j = i; j < i + h; j += 4) {
        const p = row + (<usize>j << 2);
        const p0 = v128.load(p);
        const p1 = v128.load(p + hb);
        const p2 = v128.load(p + 2 * hb);
        const p3 = v128.load(p + 3 * hb);
        const q0 = f32x4.add(p0, p1);
        const q1 = f32x4.sub(p0, p1);
        const q2 = f32x4.add(p2, p3);
        const q3 = f32x4.sub(p2, p3);
        v128.store(p, f32x4.add(q0, q2));
        v128.store(p + hb, f32x4.add(q1, q3));
        v128.store(p + 2 * hb, f32x4.sub(q0, q2));
        v128.store(p + 3 * hb, f32x4.sub(q1, q3));
      }
  }
  for (; h < d; h <<= 1) {
    const hb = <usize>h << 2;
    for (let i = 0; i < d; i += h << 1)
      for (let j = i; j < i + h; j += 4) {
        const p = row + (<usize>j << 2);
        const x = v128.load(p);
        const y = v128.load(p + hb);
        v128.store(p, f32x4.add(x, y));
        v128.store(p + hb, f32x4.sub(x, y));
      }
  }
}

/** In place: (x_i, x_{i+half}) → (x·cos − y·sin, y·cos + x·sin) with cos/sin tables at cs. */
function rotateRow(row: usize, cs: usize, half: i32): void {
  const xb = row + (<usize>half << 2);
  const sn = cs + (<usize>half << 2);
  let i = 0;
  for (; i + 4 <= half; i += 4) {
    const o = <usize>i << 2;
    const u = v128.load(row + o);
    const v = v128.load(xb + o);
    const c = v128.load(cs + o);
    const s = v128.load(sn + o);
    v128.store(row + o, f32x4.sub(f32x4.mul(u, c), f32x4.mul(v, s)));
    v128.store(xb + o, f32x4.add(f32x4.mul(v, c), f32x4.mul(u, s)));
  }
  for (; i < half; i++) {
    const o = <usize>i << 2;
    const u = load<f32>(row + o);
    const v = load<f32>(xb + o);
    const c = load<f32>(cs + o);
    const s = load<f32>(sn + o);
    store<f32>(row + o, u * c - v * s);
    store<f32>(xb + o, v * c + u * s);
  }
}
