// f32 ↔ IEEE half rows for the f16 KV cache (kvWrite's narrowing, kvConvert's reads and loads): F16C,
// which every ISA level the addon runs at has (cpu.cc), 8 values per instruction, round to nearest even.
#include <immintrin.h>
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
