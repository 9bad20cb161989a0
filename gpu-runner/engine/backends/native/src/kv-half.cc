// f32 ↔ IEEE half rows for the f16 KV cache (kvWrite's narrowing, kvConvert's reads and loads): F16C,
// which every ISA level the addon runs at has (cpu.cc), 8 values per instruction, round to nearest even;
// and an f16 artifact section's rows into an f16 cache (copied, keys re-rotated in f32 when moved).
#include <immintrin.h>
#include <cstring>
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

}  // namespace kv

namespace kv {

void unpackHalf(const uint16_t* src, uint16_t* dst, int64_t kvHeads, int64_t n, int64_t d, int64_t headStride,
                const float* cs) {
  const int64_t half = d / 2;
  float row[512];
  for (int64_t h = 0; h < kvHeads; h++)
    for (int64_t t = 0; t < n; t++) {
      const uint16_t* s = src + (h * n + t) * d;
      uint16_t* o = dst + h * headStride + t * d;
      if (!cs) {
        std::memcpy(o, s, d * 2);
        continue;
      }
      fromHalf(s, row, d);
      for (int64_t i = 0; i < half; i++) {
        const float u = row[i], v = row[half + i], c = cs[i], sn = cs[half + i];
        row[i] = u * c - v * sn;
        row[half + i] = v * c + u * sn;
      }
      toHalf(row, o, d);
    }
}

}  // namespace kv
