// Q8_0 / Q4_0 weight matmul with integer dot products, compiled twice: KV_VNNI=1 (AVX-512 VNNI:
// vpdpbusd, 16 columns × 4 k per instruction) and KV_VNNI=0 (AVX2: maddubs + madd over 8 columns).
// Activations are quantized on the fly to Q8_0 blocks (per 32: d = max|x| / 127, q = round(x / d)).
// Weights come packed by pack.cc: groups of 16 columns; per 32-block 16 f16 scales, then the quants
// interleaved as [k/4][16 columns][4 k] (u8 = q + 128 for Q8_0, nibble q for Q4_0: 64 bytes of nibbles
// hold two such k/4 steps, low then high). For each block: I = Σ u8 · xq (integers), then
// y += dw · (xd · I + xc) where xc = −offset · xd · Σ xq undoes the weights' offset.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <immintrin.h>
#include "kernels.h"

namespace kv {
namespace KV_NS {

namespace {
constexpr int64_t GROUP = 16;
constexpr int64_t SCALE_BYTES = 32;  // 16 f16 scales per block
/** Blocks ahead the kernels prefetch a group's weights (they stream from memory once per call). */
constexpr int64_t PF_BLOCKS = 4;

inline int64_t blockBytes(int32_t type) { return SCALE_BYTES + (type == W_Q8_0 ? 512 : 256); }

inline int32_t x4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
}  // namespace

#if KV_VNNI
// VNNI corrects both formats through xc: Q8_0 weights are stored + 128 (vpdpbusd multiplies u8 · s8).
float weightOffset(int32_t type) { return type == W_Q8_0 ? 128.0f : 8.0f; }
#else
// AVX2 multiplies signed Q8_0 weights directly (sign trick); Q4_0 nibbles stay unsigned (+ 8).
float weightOffset(int32_t type) { return type == W_Q8_0 ? 0.0f : 8.0f; }
#endif

void quantizeX(const float* x, int64_t K, const QuantX& q, int64_t m0, int64_t m1, float offset) {
  const int64_t nb = K / 32;
  const __m256 signBit = _mm256_set1_ps(-0.0f);
  for (int64_t m = m0; m < m1; m++) {
    for (int64_t b = 0; b < nb; b++) {
      const float* src = x + m * K + b * 32;
      __m256 v[4];
      __m256 amax = _mm256_setzero_ps();
      for (int t = 0; t < 4; t++) {
        v[t] = _mm256_loadu_ps(src + 8 * t);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(signBit, v[t]));
      }
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float d = _mm_cvtss_f32(h) / 127.0f;
      const __m256 id = _mm256_set1_ps(d > 0 ? 1.0f / d : 0.0f);
      __m256i qi[4];
      for (int t = 0; t < 4; t++) qi[t] = _mm256_cvtps_epi32(_mm256_mul_ps(v[t], id));
      // pack 32 i32 → 32 i8 (packs interleave 128-bit lanes; the permute restores order)
      const __m256i s01 = _mm256_packs_epi32(qi[0], qi[1]);
      const __m256i s23 = _mm256_packs_epi32(qi[2], qi[3]);
      __m256i s = _mm256_packs_epi16(s01, s23);
      s = _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q.xq + m * K + b * 32), s);
      // Σ q: widen via maddubs against ones (|q| ≤ 127, no saturation), then madd
      const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), s);
      const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
      __m128i r = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
      r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
      r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1));
      const int32_t sum = _mm_cvtsi128_si32(r);
      q.xd[m * nb + b] = d;
      q.xc[m * nb + b] = -offset * d * static_cast<float>(sum);
    }
  }
}

#if KV_VNNI
namespace {
/** 4 quant bytes of k/4 step kq (0..7) of a packed block's 16 columns (see pack.cc) as a vector */
template <int32_t T>
inline __m512i weightStep(const uint8_t* blk, int kq, __m512i lowNib) {
  if constexpr (T == W_Q8_0) {
    return _mm512_loadu_si512(blk + SCALE_BYTES + kq * 64);
  } else {
    const __m512i p = _mm512_loadu_si512(blk + SCALE_BYTES + (kq >> 1) * 64);
    return (kq & 1) ? _mm512_and_si512(_mm512_srli_epi16(p, 4), lowNib) : _mm512_and_si512(p, lowNib);
  }
}

/**
 * Rows [m, m + R) × G groups of 16 columns starting at column n (every M > 1: prefill, and decode steps of
 * several sequences). The weight type is a template argument and the k/4 steps are unrolled, so the R·G
 * integer and R·G float accumulators stay in registers (R·G ≤ 12) and each step is G weight loads, R
 * broadcasts and R·G dot products. `prefetch`: the tile that first reads these weights prefetches them
 * PF_BLOCKS blocks ahead (a decode step's weights stream from memory once).
 */
template <int R, int G, int32_t T>
void microQ(const MatmulQ& a, int64_t m, int64_t n, bool prefetch) {
  const int64_t nb = a.K / 32;
  constexpr int64_t bb = SCALE_BYTES + (T == W_Q8_0 ? 512 : 256);
  const int64_t gstride = nb * bb;
  const uint8_t* wg = a.w + (n / GROUP) * gstride;
  const int8_t* xr = a.qx.xq + m * a.K;
  const float* xd = a.qx.xd + m * nb;
  const float* xc = a.qx.xc + m * nb;
  const int64_t K = a.K;
  __m512 f[R][G];
  for (int r = 0; r < R; r++)
    for (int g = 0; g < G; g++) f[r][g] = _mm512_setzero_ps();
  const __m512i lowNib = _mm512_set1_epi8(0x0f);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = wg + b * bb;
    const int8_t* xb = xr + b * 32;
    if (prefetch && b + PF_BLOCKS < nb)
      for (int g = 0; g < G; g++)
        for (int64_t line = 0; line < bb; line += 64)
          _mm_prefetch(reinterpret_cast<const char*>(blk + g * gstride + PF_BLOCKS * bb + line), _MM_HINT_T0);
    __m512i ia[R][G];
    for (int r = 0; r < R; r++)
      for (int g = 0; g < G; g++) ia[r][g] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int kq = 0; kq < 8; kq++) {
      __m512i w[G];
      for (int g = 0; g < G; g++) w[g] = weightStep<T>(blk + g * gstride, kq, lowNib);
      for (int r = 0; r < R; r++) {
        const __m512i xv = _mm512_set1_epi32(x4(xb + r * K + kq * 4));
        for (int g = 0; g < G; g++) ia[r][g] = _mm512_dpbusd_epi32(ia[r][g], w[g], xv);
      }
    }
    __m512 dw[G];
    for (int g = 0; g < G; g++)
      dw[g] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + g * gstride)));
    for (int r = 0; r < R; r++) {
      const __m512 d = _mm512_set1_ps(xd[r * nb + b]);
      const __m512 c = _mm512_set1_ps(xc[r * nb + b]);
      for (int g = 0; g < G; g++) {
        const __m512 t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][g]), d, c);
        f[r][g] = _mm512_fmadd_ps(t, dw[g], f[r][g]);
      }
    }
  }
  for (int g = 0; g < G; g++) {
    const int64_t c0 = n + g * GROUP;
    const int cols = static_cast<int>(std::min<int64_t>(GROUP, a.N - c0));
    if (cols <= 0) break;
    const __mmask16 mk = static_cast<__mmask16>((1u << cols) - 1);
    const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + c0) : _mm512_setzero_ps();
    for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(a.y + (m + r) * a.N + c0, mk, _mm512_add_ps(f[r][g], bias));
  }
}
constexpr int MRQ = 6;


/**
 * One row (a single sequence's decode step: a GEMV) × one group of 16 columns at n: the group's blocks
 * stream from memory (prefetched) while four sets of integer accumulators (k/4 step kq goes to set
 * kq % 4, summed after the block; integer sums, so the result is the same) keep enough independent
 * dot-product chains in flight for one row.
 */
template <int32_t T>
void microRow(const MatmulQ& a, int64_t n) {
  constexpr int S = 4;
  const int64_t nb = a.K / 32;
  constexpr int64_t bb = SCALE_BYTES + (T == W_Q8_0 ? 512 : 256);
  const uint8_t* wg = a.w + (n / GROUP) * nb * bb;
  const int8_t* xr = a.qx.xq;
  __m512 acc = _mm512_setzero_ps();
  const __m512i lowNib = _mm512_set1_epi8(0x0f);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = wg + b * bb;
    if (b + PF_BLOCKS < nb)
      for (int64_t line = 0; line < bb; line += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + PF_BLOCKS * bb + line), _MM_HINT_T0);
    __m512i ia[S];
    for (int c = 0; c < S; c++) ia[c] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int kq = 0; kq < 8; kq++)
      ia[kq % S] = _mm512_dpbusd_epi32(ia[kq % S], weightStep<T>(blk, kq, lowNib), _mm512_set1_epi32(x4(xr + b * 32 + kq * 4)));
    const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(ia[0], ia[1]), _mm512_add_epi32(ia[2], ia[3]));
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    const __m512 t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(a.qx.xd[b]), _mm512_set1_ps(a.qx.xc[b]));
    acc = _mm512_fmadd_ps(t, dw, acc);
  }
  const int cols = static_cast<int>(std::min<int64_t>(GROUP, a.N - n));
  const __mmask16 mk = static_cast<__mmask16>((1u << cols) - 1);
  const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + n) : _mm512_setzero_ps();
  _mm512_mask_storeu_ps(a.y + n, mk, _mm512_add_ps(acc, bias));
}
}  // namespace
#else
namespace {
/** rows [m, m + R) × one group of 16 columns (two halves of 8) starting at column n. */
template <int R>
void microQ1(const MatmulQ& a, int64_t m, int64_t n) {
  const int64_t nb = a.K / 32;
  const int64_t bb = blockBytes(a.type);
  const uint8_t* wg = a.w + (n / GROUP) * nb * bb;
  __m256 f[R][2];
  for (int r = 0; r < R; r++) f[r][0] = f[r][1] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i lowNib = _mm256_set1_epi8(0x0f);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = wg + b * bb;
    __m256i ia[R][2];
    for (int r = 0; r < R; r++) ia[r][0] = ia[r][1] = _mm256_setzero_si256();
    for (int kq = 0; kq < 8; kq++) {
      for (int h = 0; h < 2; h++) {
        __m256i w;
        if (a.type == W_Q8_0) {
          w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + SCALE_BYTES + kq * 64 + h * 32)), flip);
          const __m256i aw = _mm256_sign_epi8(w, w);
          for (int r = 0; r < R; r++) {
            const __m256i xv = _mm256_set1_epi32(x4(a.qx.xq + (m + r) * a.K + b * 32 + kq * 4));
            const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, w));
            ia[r][h] = _mm256_add_epi32(ia[r][h], _mm256_madd_epi16(p, ones));
          }
        } else {
          const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + SCALE_BYTES + (kq >> 1) * 64 + h * 32));
          w = (kq & 1) ? _mm256_and_si256(_mm256_srli_epi16(p, 4), lowNib) : _mm256_and_si256(p, lowNib);
          for (int r = 0; r < R; r++) {
            const __m256i xv = _mm256_set1_epi32(x4(a.qx.xq + (m + r) * a.K + b * 32 + kq * 4));
            ia[r][h] = _mm256_add_epi32(ia[r][h], _mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), ones));
          }
        }
      }
    }
    const __m256 dw0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
    const __m256 dw1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 16)));
    for (int r = 0; r < R; r++) {
      const __m256 d = _mm256_set1_ps(a.qx.xd[(m + r) * nb + b]);
      const __m256 c = _mm256_set1_ps(a.qx.xc[(m + r) * nb + b]);
      f[r][0] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[r][0]), d, c), dw0, f[r][0]);
      f[r][1] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[r][1]), d, c), dw1, f[r][1]);
    }
  }
  alignas(32) float tmp[16];
  const int cols = static_cast<int>(std::min<int64_t>(GROUP, a.N - n));
  for (int r = 0; r < R; r++) {
    _mm256_store_ps(tmp, f[r][0]);
    _mm256_store_ps(tmp + 8, f[r][1]);
    float* y = a.y + (m + r) * a.N + n;
    for (int c = 0; c < cols; c++) y[c] = tmp[c] + (a.bias ? a.bias[n + c] : 0.0f);
  }
}
constexpr int MRQ = 3;
}  // namespace
#endif

namespace {
template <int R>
void rowsQ(int rows, const MatmulQ& a, int64_t m, int64_t n, int groups, bool prefetch) {
  if constexpr (R > 0) {
    if (rows != R) return rowsQ<R - 1>(rows, a, m, n, groups, prefetch);
#if KV_VNNI
    if (a.type == W_Q8_0) {
      if (groups == 2) microQ<R, 2, W_Q8_0>(a, m, n, prefetch);
      else microQ<R, 1, W_Q8_0>(a, m, n, prefetch);
    } else {
      if (groups == 2) microQ<R, 2, W_Q4_0>(a, m, n, prefetch);
      else microQ<R, 1, W_Q4_0>(a, m, n, prefetch);
    }
#else
    for (int g = 0; g < groups; g++) microQ1<R>(a, m, n + g * GROUP);
#endif
  }
}
constexpr int64_t MCQ = 96;
}  // namespace

void matmulQ(const MatmulQ& a, int64_t n0, int64_t n1) {
#if KV_VNNI
  if (a.M == 1) {
    for (int64_t n = n0; n < n1; n += GROUP) {
      if (a.type == W_Q8_0) microRow<W_Q8_0>(a, n);
      else microRow<W_Q4_0>(a, n);
    }
    return;
  }
#endif
  for (int64_t m0 = 0; m0 < a.M; m0 += MCQ) {
    const int64_t m1 = std::min(a.M, m0 + MCQ);
    for (int64_t n = n0; n < n1; n += 2 * GROUP) {
      const int groups = n + GROUP < n1 ? 2 : 1;
      for (int64_t m = m0; m < m1; m += MRQ) {
        const int rows = static_cast<int>(std::min<int64_t>(MRQ, m1 - m));
        // the block's first row tile brings the weights in; the others find them in cache
        rowsQ<MRQ>(rows, a, m, n, groups, m == m0);
      }
    }
  }
}

}  // namespace KV_NS
}  // namespace kv

namespace kv {
namespace KV_NS {
double peakDot(int64_t iters) {
  // 12 independent dot-product accumulations per step on fixed registers: the instructions' throughput
#if KV_VNNI
#define KV_DOT(r) "vpdpbusd %%zmm13, %%zmm14, %%zmm" #r "\n\t"
  constexpr double OPS = 64 * 2;
#else
  // AVX2: maddubs + madd per 32 multiply-adds (the accumulate add is left out: it is not the bottleneck)
#define KV_DOT(r) "vpmaddubsw %%ymm13, %%ymm14, %%ymm" #r "\n\tvpmaddwd %%ymm15, %%ymm" #r ", %%ymm" #r "\n\t"
  constexpr double OPS = 32 * 2;
#endif
  __asm__ volatile("vpxor %%xmm13, %%xmm13, %%xmm13\n\tvpxor %%xmm14, %%xmm14, %%xmm14\n\tvpxor %%xmm15, %%xmm15, %%xmm15" ::: "xmm13", "xmm14", "xmm15");
  for (int64_t i = 0; i < iters; i++)
    __asm__ volatile(KV_DOT(0) KV_DOT(1) KV_DOT(2) KV_DOT(3) KV_DOT(4) KV_DOT(5) KV_DOT(6) KV_DOT(7) KV_DOT(8)
                         KV_DOT(9) KV_DOT(10) KV_DOT(11)
                     :
                     :
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
                       "xmm11", "xmm13", "xmm14", "xmm15");
#undef KV_DOT
  return static_cast<double>(iters) * 12 * OPS;
}
}  // namespace KV_NS
}  // namespace kv
