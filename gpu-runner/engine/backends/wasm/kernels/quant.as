// Q8_0 / Q4_0 weight matmul with int8 dot products, on ggml's own block layout (no repacking):
// w rows [N][K/32 blocks]; Q8_0 block = f16 d + 32 int8 (34 bytes), Q4_0 block = f16 d + 16 bytes whose
// low nibbles are elements 0..15 and high nibbles 16..31, value (q − 8)·d (18 bytes).
// quantize_q8 first turns the activations into Q8_0 blocks (xq int8 [M][K], xd = d [M][K/32], xc =
// 8·d·Σq [M][K/32] for Q4_0's −8); matmul_q then sums, per (row, column) and block, I = Σ q_w·q_x with
// dotS8 / dotU4 (./idot: relaxed-SIMD i8 dot products, or i16 multiply-adds) and y = Σ_b d_w·d_x·I
// (− d_w·xc for Q4_0). 2 rows × 4 columns per pass share their loads; parts split the columns.
import { argI, argP, halfToF32s, hsum, setHalfScale, share } from './simd';
import { dotS8, dotU4 } from './idot';

const Q8_0: i32 = 2;

// args: 0 x, 1 xq, 2 xd, 3 xc, 4 M, 5 K (K % 32 = 0). Rows are split over parts.
export function quantize_q8(a: usize, part: i32, parts: i32, slot: i32): void {
  const x = argP(a, 0);
  const xq = argP(a, 1);
  const xd = argP(a, 2);
  const xc = argP(a, 3);
  const M = argI(a, 4);
  const K = argI(a, 5);
  const nb = K >> 5;
  for (let m = share(M, part, parts); m < share(M, part + 1, parts); m++) {
    for (let b = 0; b < nb; b++) {
      const src = x + ((<usize>m * K + (b << 5)) << 2);
      let amax = f32x4.splat(0);
      for (let t = 0; t < 8; t++) amax = f32x4.max(amax, f32x4.abs(v128.load(src + (<usize>t << 4))));
      const t1 = f32x4.max(amax, v128.shuffle<f32>(amax, amax, 2, 3, 0, 1));
      const mx = f32x4.extract_lane(f32x4.max(t1, v128.shuffle<f32>(t1, t1, 1, 0, 3, 2)), 0);
      const d: f32 = mx / 127;
      const id = f32x4.splat(d > 0 ? 1 / d : 0);
      let sum = i32x4.splat(0);
      const dst = xq + <usize>m * K + (b << 5);
      for (let h = 0; h < 2; h++) {
        const s = src + (<usize>h << 6);
        const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(s), id)));
        const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(s, 16), id)));
        const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(s, 32), id)));
        const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(s, 48), id)));
        sum = i32x4.add(sum, i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)));
        v128.store(dst + (<usize>h << 4), i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
      }
      const st = i32x4.add(sum, v128.shuffle<i32>(sum, sum, 2, 3, 0, 1));
      const total = i32x4.extract_lane(i32x4.add(st, v128.shuffle<i32>(st, st, 1, 0, 3, 2)), 0);
      store<f32>(xd + (<usize>(m * nb + b) << 2), d);
      store<f32>(xc + (<usize>(m * nb + b) << 2), 8 * d * <f32>total);
    }
  }
}

/** i32x4 partial sums of Σ q_w·q_x over one block (w at the block's start, x at the block's 32 int8). */
@inline function blockDot(w: usize, x: usize, q8: bool): v128 {
  const x0 = v128.load(x);
  const x1 = v128.load(x, 16);
  if (q8) {
    const acc = dotS8(i32x4.splat(0), v128.load(w, 2), x0);
    return dotS8(acc, v128.load(w, 18), x1);
  }
  const qs = v128.load(w, 2);
  const lo = v128.and(qs, i8x16.splat(15));
  const hi = i8x16.shr_u(qs, 4);
  return dotU4(dotU4(i32x4.splat(0), lo, x0), hi, x1);
}

@inline function half(p: usize): f32 {
  return halfToF32s(load<u16>(p));
}

// args: 0 xq, 1 xd, 2 xc, 3 w, 4 bias (0 = none), 5 y, 6 M, 7 N, 8 K, 9 type (2 Q8_0, 3 Q4_0)
export function matmul_q(a: usize, part: i32, parts: i32, slot: i32): void {
  const xq = argP(a, 0);
  const xd = argP(a, 1);
  const xc = argP(a, 2);
  const w = argP(a, 3);
  const bias = argP(a, 4);
  const y = argP(a, 5);
  const M = argI(a, 6);
  const N = argI(a, 7);
  const K = argI(a, 8);
  const q8 = argI(a, 9) == Q8_0;
  setHalfScale(reinterpret<f32>(0x77800000)); // ggml's scales are IEEE halves (2^112 rebias)
  const nb = K >> 5;
  const bb: usize = q8 ? 34 : 18;
  const row = <usize>nb * bb;
  const n4 = (N + 3) >> 2;
  const j0 = min<i32>(N, share(n4, part, parts) << 2);
  const j1 = min<i32>(N, share(n4, part + 1, parts) << 2);
  // columns in chunks of 16 weight rows (≤ 10 KiB at K = 576) reused by every row pair of x
  for (let jc = j0; jc < j1; jc += 16) {
    const jcEnd = min<i32>(j1, jc + 16);
    let m = 0;
    for (; m + 2 <= M; m += 2) {
      let j = jc;
      for (; j + 4 <= jcEnd; j += 4) rows2cols4(xq, xd, xc, w + <usize>j * row, row, bb, nb, K, m, q8, y + ((<usize>m * N + j) << 2), N);
      for (; j < jcEnd; j++) {
        store<f32>(y + ((<usize>m * N + j) << 2), one(xq, xd, xc, w + <usize>j * row, bb, nb, K, m, q8));
        store<f32>(y + ((<usize>(m + 1) * N + j) << 2), one(xq, xd, xc, w + <usize>j * row, bb, nb, K, m + 1, q8));
      }
    }
    for (; m < M; m++)
      for (let j = jc; j < jcEnd; j++) store<f32>(y + ((<usize>m * N + j) << 2), one(xq, xd, xc, w + <usize>j * row, bb, nb, K, m, q8));
  }
  if (bias) {
    for (let m = 0; m < M; m++)
      for (let j = j0; j < j1; j++) {
        const p = y + ((<usize>m * N + j) << 2);
        store<f32>(p, load<f32>(p) + load<f32>(bias + (<usize>j << 2)));
      }
  }
}

/** y[m][j] for one row and one weight row w. */
function one(xq: usize, xd: usize, xc: usize, w: usize, bb: usize, nb: i32, K: i32, m: i32, q8: bool): f32 {
  let acc = f32x4.splat(0);
  let corr: f32 = 0;
  const xr = xq + <usize>m * K;
  const sr = <usize>(m * nb) << 2;
  for (let b = 0; b < nb; b++) {
    const wb = w + <usize>b * bb;
    const dw = half(wb);
    const i = blockDot(wb, xr + (<usize>b << 5), q8);
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(i), f32x4.splat(dw * load<f32>(xd + sr + (<usize>b << 2)))));
    if (!q8) corr += dw * load<f32>(xc + sr + (<usize>b << 2));
  }
  return hsum(acc) - corr;
}

/** [Σ lanes of a, of b, of c, of d] for i32x4 (a 4×4 transpose-add). */
@inline function isum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(v128.shuffle<i32>(a, b, 0, 4, 1, 5), v128.shuffle<i32>(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(v128.shuffle<i32>(c, d, 0, 4, 1, 5), v128.shuffle<i32>(c, d, 2, 6, 3, 7));
  return i32x4.add(v128.shuffle<i32>(ab, cd, 0, 1, 4, 5), v128.shuffle<i32>(ab, cd, 2, 3, 6, 7));
}

/** Σ q_w·q_x of one block with x's two vectors already loaded. */
@inline function dotX(w: usize, x0: v128, x1: v128, q8: bool): v128 {
  if (q8) return dotS8(dotS8(i32x4.splat(0), v128.load(w, 2), x0), v128.load(w, 18), x1);
  const qs = v128.load(w, 2);
  return dotU4(dotU4(i32x4.splat(0), v128.and(qs, i8x16.splat(15)), x0), i8x16.shr_u(qs, 4), x1);
}

/**
 * y[m..m+1][j..j+3] (y points at [m][j], row stride N) for 4 consecutive weight rows from w. Per block the
 * 4 columns' integer sums are reduced together (isum4) and scaled by d_w·d_x as one f32x4.
 */
function rows2cols4(xq: usize, xd: usize, xc: usize, w: usize, row: usize, bb: usize, nb: i32, K: i32, m: i32, q8: bool, y: usize, N: i32): void {
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  const x0 = xq + <usize>m * K;
  const x1 = x0 + <usize>K;
  const s0 = <usize>(m * nb) << 2;
  const s1 = s0 + (<usize>nb << 2);
  for (let b = 0; b < nb; b++) {
    const ob = <usize>b * bb;
    const xb = <usize>b << 5;
    const w0 = w + ob, w1 = w0 + row, w2 = w1 + row, w3 = w2 + row;
    const dw = f32x4(half(w0), half(w1), half(w2), half(w3));
    const xa0 = v128.load(x0 + xb), xa1 = v128.load(x0 + xb, 16);
    const xb0 = v128.load(x1 + xb), xb1 = v128.load(x1 + xb, 16);
    const i0 = isum4(dotX(w0, xa0, xa1, q8), dotX(w1, xa0, xa1, q8), dotX(w2, xa0, xa1, q8), dotX(w3, xa0, xa1, q8));
    const i1 = isum4(dotX(w0, xb0, xb1, q8), dotX(w1, xb0, xb1, q8), dotX(w2, xb0, xb1, q8), dotX(w3, xb0, xb1, q8));
    acc0 = f32x4.add(acc0, f32x4.mul(f32x4.convert_i32x4_s(i0), f32x4.mul(dw, f32x4.splat(load<f32>(xd + s0 + (<usize>b << 2))))));
    acc1 = f32x4.add(acc1, f32x4.mul(f32x4.convert_i32x4_s(i1), f32x4.mul(dw, f32x4.splat(load<f32>(xd + s1 + (<usize>b << 2))))));
    if (!q8) {
      c0 = f32x4.add(c0, f32x4.mul(dw, f32x4.splat(load<f32>(xc + s0 + (<usize>b << 2)))));
      c1 = f32x4.add(c1, f32x4.mul(dw, f32x4.splat(load<f32>(xc + s1 + (<usize>b << 2)))));
    }
  }
  v128.store(y, f32x4.sub(acc0, c0));
  v128.store(y + (<usize>N << 2), f32x4.sub(acc1, c1));
}
