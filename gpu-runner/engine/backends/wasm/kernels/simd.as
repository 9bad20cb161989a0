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
/** Start of part `p` of n items split into `parts` (part p is [share(n, p, parts), share(n, p + 1, parts))). */
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

// Vector constants live in a data segment and are loaded, not written as v128.const: V8 materialises
// each non-trivial v128.const with several instructions at every use, inside hot loops too.
// exp4: lo, hi, log2e, 0.5, C1, C2, p0..p5, 1, 127 (i32)
const EXP_C: usize = memory.data<f32>([
  -87.33654, -87.33654, -87.33654, -87.33654,
  88.72283, 88.72283, 88.72283, 88.72283,
  1.44269504088896341, 1.44269504088896341, 1.44269504088896341, 1.44269504088896341,
  0.5, 0.5, 0.5, 0.5,
  0.693359375, 0.693359375, 0.693359375, 0.693359375,
  -2.12194440e-4, -2.12194440e-4, -2.12194440e-4, -2.12194440e-4,
  1.9875691500e-4, 1.9875691500e-4, 1.9875691500e-4, 1.9875691500e-4,
  1.3981999507e-3, 1.3981999507e-3, 1.3981999507e-3, 1.3981999507e-3,
  8.3334519073e-3, 8.3334519073e-3, 8.3334519073e-3, 8.3334519073e-3,
  4.1665795894e-2, 4.1665795894e-2, 4.1665795894e-2, 4.1665795894e-2,
  1.6666665459e-1, 1.6666665459e-1, 1.6666665459e-1, 1.6666665459e-1,
  5.0000001201e-1, 5.0000001201e-1, 5.0000001201e-1, 5.0000001201e-1,
  1.0, 1.0, 1.0, 1.0,
], 16);
const MISC_C: usize = memory.data<f32>([-Infinity, -Infinity, -Infinity, -Infinity, 1, 1, 1, 1], 16);
/** f32x4 of -inf / of 1 (loaded, see above). */
@inline export function negInf4(): v128 {
  return v128.load(MISC_C);
}
@inline export function one4(): v128 {
  return v128.load(MISC_C, 16);
}
const EXP_BIAS: usize = memory.data<i32>([127, 127, 127, 127], 16);
// half → f32: mask 0x8fffe000, then × 2^112 (0x77800000)
const HALF_C: usize = memory.data<u32>([
  0x8fffe000, 0x8fffe000, 0x8fffe000, 0x8fffe000,
  0x77800000, 0x77800000, 0x77800000, 0x77800000,
], 16);

/**
 * e^x per lane (Cephes expf: range reduction by ln 2, degree-6 polynomial); relative error ~2 ulp.
 * Lanes below -87.3 (including -inf) give exactly 0, so masked scores vanish.
 */
export function exp4(x: v128): v128 {
  const lo = v128.load(EXP_C);
  const small = f32x4.lt(x, lo);
  let v = f32x4.min(f32x4.max(x, lo), v128.load(EXP_C, 16));
  const fx = f32x4.floor(madd(v, v128.load(EXP_C, 32), v128.load(EXP_C, 48)));
  v = f32x4.sub(v, f32x4.mul(fx, v128.load(EXP_C, 64)));
  v = f32x4.sub(v, f32x4.mul(fx, v128.load(EXP_C, 80)));
  let y = v128.load(EXP_C, 96);
  y = madd(y, v, v128.load(EXP_C, 112));
  y = madd(y, v, v128.load(EXP_C, 128));
  y = madd(y, v, v128.load(EXP_C, 144));
  y = madd(y, v, v128.load(EXP_C, 160));
  y = madd(y, v, v128.load(EXP_C, 176));
  y = madd(y, f32x4.mul(v, v), f32x4.add(v, v128.load(EXP_C, 192)));
  const n = i32x4.trunc_sat_f32x4_s(fx);
  const pow2 = i32x4.shl(i32x4.add(n, v128.load(EXP_BIAS)), 23);
  const r = f32x4.mul(y, pow2);
  return v128.andnot(r, small);
}

/**
 * Multiplier that rebiases a half's exponent: 2^112 for IEEE halves as stored; the backend stores f16
 * weights pre-scaled by 2^10 (every subnormal half becomes normal, see tensors.ts) and passes 2^102, so
 * no f32 denormal ever enters the multiply (x86 takes a microcode assist on each). Set per kernel call
 * from its arguments; globals are per instance, i.e. per thread.
 */
let halfMul: f32 = reinterpret<f32>(0x77800000);
@inline export function setHalfScale(s: f32): void {
  halfMul = s;
}
/** The two vectors halvesLo/halvesHi need (load once outside a loop). */
@inline export function halfMask(): v128 {
  return v128.load(HALF_C);
}
@inline export function halfScale(): v128 {
  return f32x4.splat(halfMul);
}

/**
 * IEEE half → f32 for the low four halves of `v` (8 halves). Each half is moved to the top 16 bits of
 * a lane; an arithmetic shift by 3 puts exponent and mantissa at f32 positions (sign copied into bits
 * 28..30, masked off), and × 2^112 rebiases the exponent — exact for normal and subnormal halves, the
 * sign kept by the multiply (scale: see halfMul). inf/NaN are not special-cased (weights are finite).
 */
@inline export function halvesLo(v: v128, mask: v128, scale: v128): v128 {
  const t = i8x16.shuffle(v, v, 0, 0, 0, 1, 0, 0, 2, 3, 0, 0, 4, 5, 0, 0, 6, 7);
  return f32x4.mul(v128.and(i32x4.shr_s(t, 3), mask), scale);
}
/** The high four halves of `v`, as halvesLo. */
@inline export function halvesHi(v: v128, mask: v128, scale: v128): v128 {
  const t = i8x16.shuffle(v, v, 0, 0, 8, 9, 0, 0, 10, 11, 0, 0, 12, 13, 0, 0, 14, 15);
  return f32x4.mul(v128.and(i32x4.shr_s(t, 3), mask), scale);
}

/** Four halves at p (8 bytes) → f32x4. */
@inline export function loadHalf4(p: usize): v128 {
  return halvesLo(v128.load64_zero(p), halfMask(), halfScale());
}

/** Scalar half → f32 (same rules as halvesLo). */
@inline export function halfToF32s(h: u32): f32 {
  const u = (<i32>(h << 16) >> 3) & 0x8fffe000;
  return reinterpret<f32>(u) * halfMul;
}
