// Shared SIMD helpers for the kernels (AssemblyScript). `fma` comes from ./fma, which build.ts
// generates per variant: relaxed_madd (one fused instruction where the CPU has FMA) or mul + add.
import { fma } from './fma';

// --- argument blocks: every kernel reads its arguments from 32-bit slots at `a` ---------------------
@inline export function argI(a: usize, i: i32): i32 {
  return load<i32>(a + ((<usize>i) << 2));
}
@inline export function argP(a: usize, i: i32): usize {
  return <usize>load<u32>(a + ((<usize>i) << 2));
}
@inline export function argF(a: usize, i: i32): f32 {
  return load<f32>(a + ((<usize>i) << 2));
}
/** Start of thread `tid`'s share of n items (the share is [share(n, t), share(n, t + 1))). */
@inline export function share(n: i32, tid: i32, nt: i32): i32 {
  return <i32>((<i64>n * tid) / nt);
}

@inline export function madd(a: v128, b: v128, c: v128): v128 {
  return fma(a, b, c);
}

/** Sum of the four lanes. */
@inline export function hsum(v: v128): f32 {
  const t = f32x4.add(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  const u = f32x4.add(t, v128.shuffle<f32>(t, t, 1, 0, 3, 2));
  return f32x4.extract_lane(u, 0);
}

/** [hsum(a), hsum(b), hsum(c), hsum(d)] with shuffles (a 4×4 transpose-add). */
@inline export function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 1, 5), v128.shuffle<f32>(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 1, 5), v128.shuffle<f32>(c, d, 2, 6, 3, 7));
  // ab = [a0+a2, b0+b2, a1+a3, b1+b3]
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

@inline export function hmax(v: v128): f32 {
  const t = f32x4.max(v, v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  const u = f32x4.max(t, v128.shuffle<f32>(t, t, 1, 0, 3, 2));
  return f32x4.extract_lane(u, 0);
}

/**
 * e^x per lane (Cephes expf: range reduction by ln 2, degree-6 polynomial); relative error ~2 ulp.
 * Lanes below -87.3 (including -inf) give exactly 0, so masked scores vanish.
 */
export function exp4(x: v128): v128 {
  const lo = f32x4.splat(-87.33654);
  const small = f32x4.lt(x, lo);
  let v = f32x4.min(f32x4.max(x, lo), f32x4.splat(88.72283));
  const fx = f32x4.floor(madd(v, f32x4.splat(1.44269504088896341), f32x4.splat(0.5)));
  v = f32x4.sub(v, f32x4.mul(fx, f32x4.splat(0.693359375)));
  v = f32x4.sub(v, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  let y = f32x4.splat(1.9875691500e-4);
  y = madd(y, v, f32x4.splat(1.3981999507e-3));
  y = madd(y, v, f32x4.splat(8.3334519073e-3));
  y = madd(y, v, f32x4.splat(4.1665795894e-2));
  y = madd(y, v, f32x4.splat(1.6666665459e-1));
  y = madd(y, v, f32x4.splat(5.0000001201e-1));
  y = madd(y, f32x4.mul(v, v), f32x4.add(v, f32x4.splat(1.0)));
  const n = i32x4.trunc_sat_f32x4_s(fx);
  const pow2 = i32x4.shl(i32x4.add(n, i32x4.splat(127)), 23);
  const r = f32x4.mul(y, pow2);
  return v128.andnot(r, small);
}

/**
 * IEEE half → f32 for four halves held in the low 16 bits of each i32 lane. Normal and subnormal
 * halves are exact; inf/NaN are not special-cased (weights are finite).
 */
@inline export function halfToF32(h: v128): v128 {
  const mag = i32x4.shr_u(i32x4.shl(h, 17), 4); // (h & 0x7fff) << 13
  const f = f32x4.mul(mag, f32x4.splat(reinterpret<f32>(0x77800000))); // × 2^112 rebias
  const sign = v128.and(i32x4.shl(h, 16), i32x4.splat(0x80000000));
  return v128.or(f, sign);
}

/** Four halves at p (8 bytes) → f32x4. */
@inline export function loadHalf4(p: usize): v128 {
  return halfToF32(v128.load16x4_u(p));
}

/** Scalar half → f32 (same rules as halfToF32). */
@inline export function halfToF32s(h: u32): f32 {
  const mag = ((h << 17) >>> 4);
  const f = reinterpret<f32>(mag) * reinterpret<f32>(0x77800000);
  return reinterpret<f32>(reinterpret<u32>(f) | ((h << 16) & 0x80000000));
}
