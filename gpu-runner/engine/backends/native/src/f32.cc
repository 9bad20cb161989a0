// f32 / f16-weight matmul, y = x · wᵀ (+ bias), compiled once per ISA level (simd.h).
// M ≥ GEMV_ROWS: strips of NR = 2 vectors of columns; each strip's weights are packed per K block into
// [kc][NR] f32 (f16 widened, the half scale folded in) and multiplied by an MR×NR register-blocked
// micro-kernel that broadcasts x; row blocks of MC keep x's block in L2. M < GEMV_ROWS (decode): one
// dot product per column, 4 columns per pass, weights streamed once (memory-bound).
#include <algorithm>
#include <cstring>
#include "kernels.h"
#include "simd.h"

namespace kv {
namespace KV_NS {

namespace {
constexpr int W = V::W;
constexpr int NR = 2 * W;
constexpr int MR = W == 16 ? 12 : 6;  // 2·MR accumulators: 24 of 32 zmm, 12 of 16 ymm
constexpr int64_t KC = 512;
constexpr int64_t MC = 128;
constexpr int64_t GEMV_ROWS = 4;

/** w rows [n, n + nn) (nn ≤ NR), k in [k0, k0 + kc) → out [kc][NR] f32, columns past nn zero. */
void pack(const MatmulF& a, int64_t n, int nn, int64_t k0, int64_t kc, float* out) {
  if (nn < NR) std::memset(out, 0, sizeof(float) * kc * NR);
  for (int c = 0; c < nn; c++) {
    if (a.f16) {
      const uint16_t* src = static_cast<const uint16_t*>(a.w) + (n + c) * a.K + k0;
      int64_t k = 0;
      const V::v s = V::set1(a.halfScale);
      alignas(64) float tmp[W];
      for (; k + W <= kc; k += W) {
        V::store(tmp, V::mul(V::half(src + k), s));
        for (int t = 0; t < W; t++) out[(k + t) * NR + c] = tmp[t];
      }
      for (; k < kc; k++) out[k * NR + c] = _cvtsh_ss(src[k]) * a.halfScale;
    } else {
      const float* src = static_cast<const float*>(a.w) + (n + c) * a.K + k0;
      for (int64_t k = 0; k < kc; k++) out[k * NR + c] = src[k];
    }
  }
}

/** y rows [r, r + R) × strip columns [n, n + nn) (+)= x[·][k0..k0+kc) · packed. */
template <int R>
void micro(const float* x, int64_t ldx, const float* p, int64_t kc, float* y, int64_t ldy, int nn, bool first,
           const float* bias) {
  V::v c0[R], c1[R];
  for (int r = 0; r < R; r++) c0[r] = c1[r] = V::zero();
  for (int64_t k = 0; k < kc; k++) {
    const V::v b0 = V::load(p + k * NR);
    const V::v b1 = V::load(p + k * NR + W);
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
      const V::v a = V::set1(x[r * ldx + k]);
      c0[r] = V::fma(a, b0, c0[r]);
      c1[r] = V::fma(a, b1, c1[r]);
    }
  }
  V::v b0 = V::zero(), b1 = V::zero();
  if (first && bias) {
    b0 = nn >= W ? V::load(bias) : V::loadn(bias, nn);
    if (nn > W) b1 = nn >= NR ? V::load(bias + W) : V::loadn(bias + W, nn - W);
  }
  for (int r = 0; r < R; r++) {
    float* yr = y + r * ldy;
    V::v v0 = V::add(c0[r], b0), v1 = V::add(c1[r], b1);
    if (nn >= NR) {
      if (!first) {
        v0 = V::add(v0, V::load(yr));
        v1 = V::add(v1, V::load(yr + W));
      }
      V::store(yr, v0);
      V::store(yr + W, v1);
    } else {
      const int n0 = std::min(nn, W), n1 = nn - n0;
      if (!first) v0 = V::add(v0, n0 == W ? V::load(yr) : V::loadn(yr, n0));
      if (n0 == W) V::store(yr, v0); else V::storen(yr, v0, n0);
      if (n1 > 0) {
        if (!first) v1 = V::add(v1, V::loadn(yr + W, n1));
        V::storen(yr + W, v1, n1);
      }
    }
  }
}

template <int R>
void microTail(int rows, const float* x, int64_t ldx, const float* p, int64_t kc, float* y, int64_t ldy, int nn,
               bool first, const float* bias) {
  if constexpr (R > 0) {
    if (rows == R) micro<R>(x, ldx, p, kc, y, ldy, nn, first, bias);
    else microTail<R - 1>(rows, x, ldx, p, kc, y, ldy, nn, first, bias);
  }
}

/** dot of x [K] with 4 weight rows → y[0..3] (f32 or f16 weights). */
void gemv4(const MatmulF& a, const float* x, int64_t n, int cols, float* y) {
  const int64_t K = a.K;
  V::v acc[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
  int64_t k = 0;
  if (a.f16) {
    const uint16_t* w = static_cast<const uint16_t*>(a.w) + n * K;
    for (; k + W <= K; k += W) {
      const V::v xv = V::load(x + k);
      for (int c = 0; c < cols; c++) acc[c] = V::fma(xv, V::half(w + c * K + k), acc[c]);
    }
  } else {
    const float* w = static_cast<const float*>(a.w) + n * K;
    for (; k + W <= K; k += W) {
      const V::v xv = V::load(x + k);
      for (int c = 0; c < cols; c++) acc[c] = V::fma(xv, V::load(w + c * K + k), acc[c]);
    }
  }
  for (int c = 0; c < cols; c++) {
    float s = V::hsum(acc[c]);
    for (int64_t kk = k; kk < K; kk++) {
      const float wv = a.f16 ? _cvtsh_ss(static_cast<const uint16_t*>(a.w)[(n + c) * K + kk])
                             : static_cast<const float*>(a.w)[(n + c) * K + kk];
      s += x[kk] * wv;
    }
    if (a.f16) s *= a.halfScale;
    y[c] = s + (a.bias ? a.bias[n + c] : 0.0f);
  }
}

float* packBuffer() {
  static thread_local float* buf = nullptr;
  if (!buf) buf = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * KC * NR));
  return buf;
}
}  // namespace

void matmulF(const MatmulF& a, int64_t n0, int64_t n1) {
  if (n0 >= n1) return;
  if (a.M < GEMV_ROWS) {
    // rows inside the column loop: each 4-row slice of w is read from memory once and reused from L1
    for (int64_t n = n0; n < n1; n += 4)
      for (int64_t i = 0; i < a.M; i++)
        gemv4(a, a.x + i * a.K, n, static_cast<int>(std::min<int64_t>(4, n1 - n)), a.y + i * a.N + n);
    return;
  }
  float* p = packBuffer();
  for (int64_t m0 = 0; m0 < a.M; m0 += MC) {
    const int64_t mn = std::min(MC, a.M - m0);
    for (int64_t n = n0; n < n1; n += NR) {
      const int nn = static_cast<int>(std::min<int64_t>(NR, n1 - n));
      for (int64_t k0 = 0; k0 < a.K; k0 += KC) {
        const int64_t kc = std::min(KC, a.K - k0);
        pack(a, n, nn, k0, kc, p);
        const bool first = k0 == 0;
        for (int64_t r = 0; r < mn; r += MR) {
          const int rows = static_cast<int>(std::min<int64_t>(MR, mn - r));
          const float* x = a.x + (m0 + r) * a.K + k0;
          float* y = a.y + (m0 + r) * a.N + n;
          const float* bias = a.bias ? a.bias + n : nullptr;
          if (rows == MR) micro<MR>(x, a.K, p, kc, y, a.N, nn, first, bias);
          else microTail<MR - 1>(rows, x, a.K, p, kc, y, a.N, nn, first, bias);
        }
      }
    }
  }
}

}  // namespace KV_NS
}  // namespace kv

namespace kv {
namespace KV_NS {
double peakFma(int64_t iters) {
  // 12 independent FMAs per step on fixed registers (latency × pipes ≤ 12): the instruction's throughput
#if KV_LEVEL == 512
#define KV_FMA(r) "vfmadd231ps %%zmm13, %%zmm14, %%zmm" #r "\n\t"
  __asm__ volatile("vxorps %%xmm13, %%xmm13, %%xmm13\n\tvxorps %%xmm14, %%xmm14, %%xmm14" ::: "xmm13", "xmm14");
#else
#define KV_FMA(r) "vfmadd231ps %%ymm13, %%ymm14, %%ymm" #r "\n\t"
  __asm__ volatile("vxorps %%xmm13, %%xmm13, %%xmm13\n\tvxorps %%xmm14, %%xmm14, %%xmm14" ::: "xmm13", "xmm14");
#endif
  for (int64_t i = 0; i < iters; i++)
    __asm__ volatile(KV_FMA(0) KV_FMA(1) KV_FMA(2) KV_FMA(3) KV_FMA(4) KV_FMA(5) KV_FMA(6) KV_FMA(7) KV_FMA(8)
                         KV_FMA(9) KV_FMA(10) KV_FMA(11)
                     :
                     :
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
                       "xmm11", "xmm13", "xmm14");
#undef KV_FMA
  return static_cast<double>(iters) * 12 * V::W * 2;
}
}  // namespace KV_NS
}  // namespace kv
