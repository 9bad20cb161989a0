// Vector traits for the kernels that are compiled once per ISA level (f32.cc, attention.cc): V is a
// 512-bit (AVX-512) or 256-bit (AVX2 + FMA + F16C) f32 vector with the few operations the kernels use.
// KV_LEVEL (512 or 256) and KV_NS (the namespace the level's symbols live in) come from the compiler
// command line (build.ts).
#pragma once
#include <immintrin.h>
#include <cstdint>
#include <cstddef>
#include <cmath>

namespace kv {
namespace KV_NS {

#if KV_LEVEL == 512
struct V {
  using v = __m512;
  static constexpr int W = 16;
  static inline v zero() { return _mm512_setzero_ps(); }
  static inline v set1(float a) { return _mm512_set1_ps(a); }
  static inline v load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, v a) { _mm512_storeu_ps(p, a); }
  /** first n (< W) lanes of p, zero elsewhere */
  static inline v loadn(const float* p, int n) { return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p); }
  static inline void storen(float* p, v a, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), a); }
  /** W IEEE halves at p → f32 */
  static inline v half(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
  static inline v fma(v a, v b, v c) { return _mm512_fmadd_ps(a, b, c); }
  static inline v mul(v a, v b) { return _mm512_mul_ps(a, b); }
  static inline v add(v a, v b) { return _mm512_add_ps(a, b); }
  static inline v sub(v a, v b) { return _mm512_sub_ps(a, b); }
  static inline v max(v a, v b) { return _mm512_max_ps(a, b); }
  static inline v min(v a, v b) { return _mm512_min_ps(a, b); }
  /** a where x ≥ lo, 0 where x < lo */
  static inline v zeroBelow(v a, v x, v lo) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), a); }
  static inline v div(v a, v b) { return _mm512_div_ps(a, b); }
  static inline float hsum(v a) { return _mm512_reduce_add_ps(a); }
  static inline float hmax(v a) { return _mm512_reduce_max_ps(a); }
  /** a where x > y (ordered), b elsewhere */
  static inline v selectGt(v a, v b, v x, v y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, y, _CMP_GT_OQ), b, a); }
  /** lane indices 0..W-1 as floats */
  static inline v iota() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  /** lanes where idx < lim keep a, the rest become -inf (idx, lim: i32 lanes) */
  static inline v maskLess(v a, int idx, const int32_t* lim) {
    __mmask16 m = _mm512_cmpgt_epi32_mask(_mm512_loadu_si512(lim), _mm512_set1_epi32(idx));
    return _mm512_mask_blend_ps(m, _mm512_set1_ps(-INFINITY), a);
  }
  static inline v floor(v a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  /** 2^n for integral n in f32 lanes (n in [-127, 128]) */
  static inline v pow2i(v n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
};
#elif KV_LEVEL == 256
struct V {
  using v = __m256;
  static constexpr int W = 8;
  static inline v zero() { return _mm256_setzero_ps(); }
  static inline v set1(float a) { return _mm256_set1_ps(a); }
  static inline v load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, v a) { _mm256_storeu_ps(p, a); }
  static inline __m256i tailMask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline v loadn(const float* p, int n) { return _mm256_maskload_ps(p, tailMask(n)); }
  static inline void storen(float* p, v a, int n) { _mm256_maskstore_ps(p, tailMask(n), a); }
  static inline v half(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
  static inline v fma(v a, v b, v c) { return _mm256_fmadd_ps(a, b, c); }
  static inline v mul(v a, v b) { return _mm256_mul_ps(a, b); }
  static inline v add(v a, v b) { return _mm256_add_ps(a, b); }
  static inline v sub(v a, v b) { return _mm256_sub_ps(a, b); }
  static inline v max(v a, v b) { return _mm256_max_ps(a, b); }
  static inline v min(v a, v b) { return _mm256_min_ps(a, b); }
  static inline v zeroBelow(v a, v x, v lo) { return _mm256_and_ps(a, _mm256_cmp_ps(x, lo, _CMP_GE_OQ)); }
  static inline v div(v a, v b) { return _mm256_div_ps(a, b); }
  static inline float hsum(v a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline v selectGt(v a, v b, v x, v y) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, y, _CMP_GT_OQ)); }
  static inline v iota() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
  static inline float hmax(v a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline v maskLess(v a, int idx, const int32_t* lim) {
    __m256i m = _mm256_cmpgt_epi32(_mm256_loadu_si256((const __m256i*)lim), _mm256_set1_epi32(idx));
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), a, _mm256_castsi256_ps(m));
  }
  static inline v floor(v a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static inline v pow2i(v n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
};
#else
#error "KV_LEVEL must be 512 or 256"
#endif

/** e^x per lane (Cephes expf: range reduction by ln 2, degree-6 polynomial, ~2 ulp); x < -87.3 → 0. */
static inline V::v vexp(V::v x) {
  const V::v lo = V::set1(-87.33654f);
  const V::v xin = x;
  x = V::min(V::max(x, lo), V::set1(88.72283f));
  V::v fx = V::floor(V::fma(x, V::set1(1.44269504088896341f), V::set1(0.5f)));
  V::v r = V::sub(x, V::mul(fx, V::set1(0.693359375f)));
  r = V::sub(r, V::mul(fx, V::set1(-2.12194440e-4f)));
  V::v y = V::set1(1.9875691500e-4f);
  y = V::fma(y, r, V::set1(1.3981999507e-3f));
  y = V::fma(y, r, V::set1(8.3334519073e-3f));
  y = V::fma(y, r, V::set1(4.1665795894e-2f));
  y = V::fma(y, r, V::set1(1.6666665459e-1f));
  y = V::fma(y, r, V::set1(5.0000001201e-1f));
  y = V::fma(y, V::mul(r, r), V::add(r, V::set1(1.0f)));
  return V::zeroBelow(V::mul(y, V::pow2i(fx)), xin, lo);
}

/** A K/V cache row's W values as f32: f32 rows loaded, IEEE-half rows widened (F16C), int8 codes converted. */
template <typename E>
inline V::v loadKV(const E* p);
template <>
inline V::v loadKV<float>(const float* p) {
  return V::load(p);
}
template <>
inline V::v loadKV<uint16_t>(const uint16_t* p) {
  return V::half(p);
}
/** int8 cache rows: the W codes sign-extended and converted (the row's scale is applied by the caller) */
template <>
inline V::v loadKV<int8_t>(const int8_t* p) {
#if KV_LEVEL == 512
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#else
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#endif
}

/** [Σa0, Σa1, Σa2, Σa3]: four horizontal sums in one tree (pairs interleaved, then the 128-bit lanes). */
static inline __m128 sum4(V::v a0, V::v a1, V::v a2, V::v a3) {
#if KV_LEVEL == 512
  const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
  const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
  const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t), _mm512_extractf32x8_ps(t, 1));
#else
  const __m256 t0 = _mm256_add_ps(_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
  const __m256 t1 = _mm256_add_ps(_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
  const __m256 h = _mm256_add_ps(_mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
#endif
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

}  // namespace KV_NS
}  // namespace kv
