// f32 ↔ IEEE half rows for the f16 KV cache (kvWrite's narrowing, kvConvert's reads and loads): F16C,
// which every ISA level the addon runs at has (cpu.cc), 8 values per instruction, round to nearest even.
// f32 ↔ int8 rows for the int8 KV cache (ggml's Q8_0 rule over a whole row: d = max|x| / 127, q = round(x / d)),
// the one quantizer every writer of an int8 cache calls (kvWrite, kvConvert, kvUnpack), so a row quantizes
// the same way whichever path wrote it.
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include "kernels.h"

namespace kv {

void toHalf(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

void fromHalf(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

void quantizeRow(const float* x, int8_t* q, float* scale, int64_t n) {
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), absMask));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  float amax = _mm_cvtss_f32(h);
  for (; i < n; i++) amax = std::max(amax, std::fabs(x[i]));
  *scale = amax / 127.0f;
  const float inv = amax > 0 ? 127.0f / amax : 0.0f;
  const __m256 iv = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    // round to nearest even (MXCSR default), as lrintf below; |x · inv| ≤ 127 (+ rounding): packs saturate
    const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(w, w));
  }
  for (; i < n; i++) q[i] = static_cast<int8_t>(std::max(-127L, std::min(127L, std::lrintf(x[i] * inv))));
}

void dequantizeRow(const int8_t* q, float scale, float* x, int64_t n) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                 _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i))))));
  for (; i < n; i++) x[i] = scale * static_cast<float>(q[i]);
}

}  // namespace kv
