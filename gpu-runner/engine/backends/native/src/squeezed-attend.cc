// Exact attention of one kv head's query group (R ≤ 4 rows, a decode step) over a list of 16-row blocks
// of a cache — the kept blocks of a squeezed step (squeezed.cc), scattered runs of 4 KiB pages at d = 64.
// Compiled once per ISA level (simd.h, KV_LEVEL / KV_NS from build.ts). The blocks go four at a time (64
// keys, one online-softmax step): each key's R dot products four keys at a time with one horizontal-sum
// tree, the softmax along the 64 keys per row, then each V vector loaded once for the R rows; the K and V
// rows of the block two ahead are prefetched (the hardware prefetcher stops at each page). Same arithmetic
// as the dense decode unit (attention.cc attendFew), over a block list instead of a key range, and one call
// for all the kept blocks instead of one per run. int8 rows: each key's dot products times its K scale,
// each probability times its value's V scale (as the dense unit does).
#include <algorithm>
#include <cmath>
#include <type_traits>
#include "kernels.h"
#include "simd.h"
#include "squeezed.h"

namespace kv {
namespace KV_NS {

namespace {
constexpr int W = V::W;
constexpr int BLK = 16;        // rows per block
constexpr int TILE = 4 * BLK;  // keys per softmax step
constexpr int AHEAD = 2;       // blocks prefetched ahead

/** The K and V rows of the block at row (and, int8 rows, its 16 K and V scales: one line each). */
template <typename E>
inline void fetchBlock(const E* k, const E* v, const float* ks, const float* vs, int64_t row, int d) {
  constexpr int LINE = 64 / sizeof(E);
  const E* kp = k + row * d;
  const E* vp = v + row * d;
  for (int c = 0; c < BLK * d; c += LINE) {
    _mm_prefetch(reinterpret_cast<const char*>(kp + c), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(vp + c), _MM_HINT_T0);
  }
  if (ks) {
    _mm_prefetch(reinterpret_cast<const char*>(ks + row), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(vs + row), _MM_HINT_T0);
  }
}

template <int R, typename E>
void attend(const float* q, float scale, const E* K, const E* V_, const float* ks, const float* vs, int d,
            const int32_t* blocks, int64_t nb, float* o, float* m, float* l) {
  constexpr bool Q8 = std::is_same_v<E, int8_t>;
  const int dv = d / W;
  alignas(64) float qr[R][256];
  alignas(64) float p[R][TILE];
  for (int r = 0; r < R; r++) {
    for (int c = 0; c < dv; c++) V::store(qr[r] + c * W, V::mul(V::load(q + r * d + c * W), V::set1(scale)));
    m[r] = -1e30f;
    l[r] = 0;
  }
  std::fill(o, o + static_cast<int64_t>(R) * d, 0.0f);
  for (int64_t i = 0; i < std::min<int64_t>(AHEAD, nb); i++) fetchBlock(K, V_, ks, vs, static_cast<int64_t>(blocks[i]) * BLK, d);
  for (int64_t t0 = 0; t0 < nb; t0 += 4) {
    const int tb = static_cast<int>(std::min<int64_t>(4, nb - t0));
    for (int i = 0; i < tb; i++) {
      if (t0 + i + AHEAD < nb) fetchBlock(K, V_, ks, vs, static_cast<int64_t>(blocks[t0 + i + AHEAD]) * BLK, d);
      const int64_t row0 = static_cast<int64_t>(blocks[t0 + i]) * BLK;
      const E* kb = K + row0 * d;
      for (int j = 0; j < BLK; j += 4) {
        V::v acc[R][4];
        for (int r = 0; r < R; r++)
          for (int t = 0; t < 4; t++) acc[r][t] = V::zero();
        for (int c = 0; c < dv; c++) {
          V::v kv[4];
          for (int t = 0; t < 4; t++) kv[t] = loadKV(kb + (j + t) * d + c * W);
          for (int r = 0; r < R; r++) {
            const V::v qv = V::load(qr[r] + c * W);
            for (int t = 0; t < 4; t++) acc[r][t] = V::fma(qv, kv[t], acc[r][t]);
          }
        }
        for (int r = 0; r < R; r++) {
          __m128 dots = sum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
          if constexpr (Q8) dots = _mm_mul_ps(dots, _mm_loadu_ps(ks + row0 + j));
          _mm_store_ps(p[r] + i * BLK + j, dots);
        }
      }
    }
    const int n = tb * BLK;
    float alpha[R];
    for (int r = 0; r < R; r++) {
      V::v mv = V::set1(m[r]);
      for (int j = 0; j < n; j += W) mv = V::max(mv, V::load(p[r] + j));
      const float mx = V::hmax(mv);
      const V::v mxv = V::set1(mx);
      V::v sum = V::zero();
      for (int j = 0; j < n; j += W) {
        const V::v e = vexp(V::sub(V::load(p[r] + j), mxv));
        V::store(p[r] + j, e);
        sum = V::add(sum, e);
      }
      alpha[r] = std::exp(m[r] - mx);
      l[r] = l[r] * alpha[r] + V::hsum(sum);
      m[r] = mx;
    }
    // o = o·alpha + Σ_j p_j·v_j, DC vectors of columns at a time in registers over the tile's keys
    constexpr int DC = W == 16 ? 4 : 2;
    for (int c = 0; c < dv; c += DC) {
      const int dc = std::min(DC, dv - c);
      V::v acc[R][DC];
      for (int r = 0; r < R; r++)
        for (int u = 0; u < dc; u++) acc[r][u] = V::mul(V::load(o + r * d + (c + u) * W), V::set1(alpha[r]));
      for (int i = 0; i < tb; i++) {
        const int64_t row0 = static_cast<int64_t>(blocks[t0 + i]) * BLK;
        const E* vb = V_ + row0 * d;
        for (int j = 0; j < BLK; j++) {
          V::v vv[DC];
          for (int u = 0; u < dc; u++) vv[u] = loadKV(vb + j * d + (c + u) * W);
          const float vscale = Q8 ? vs[row0 + j] : 1.0f;
          for (int r = 0; r < R; r++) {
            const V::v pr = V::set1(p[r][i * BLK + j] * vscale);
            for (int u = 0; u < dc; u++) acc[r][u] = V::fma(pr, vv[u], acc[r][u]);
          }
        }
      }
      for (int r = 0; r < R; r++)
        for (int u = 0; u < dc; u++) V::store(o + r * d + (c + u) * W, acc[r][u]);
    }
  }
}
}  // namespace

bool attendBlocks(const float* q, float scale, const void* K, const void* V_, bool half, const float* ks,
                  const float* vs, int R, int d, const int32_t* blocks, int64_t nb, float* o, float* m, float* l) {
  if (R > 4 || d > 256 || d % W) return false;
#define KV_CASE(RR)                                                                                         \
  case RR:                                                                                                  \
    if (ks)                                                                                                 \
      attend<RR, int8_t>(q, scale, static_cast<const int8_t*>(K), static_cast<const int8_t*>(V_), ks, vs, d, \
                         blocks, nb, o, m, l);                                                              \
    else if (half)                                                                                          \
      attend<RR, uint16_t>(q, scale, static_cast<const uint16_t*>(K), static_cast<const uint16_t*>(V_),     \
                           nullptr, nullptr, d, blocks, nb, o, m, l);                                       \
    else                                                                                                    \
      attend<RR, float>(q, scale, static_cast<const float*>(K), static_cast<const float*>(V_), nullptr,    \
                        nullptr, d, blocks, nb, o, m, l);                                                   \
    return true;
  switch (R) {
    KV_CASE(1)
    KV_CASE(2)
    KV_CASE(3)
    KV_CASE(4)
    default:
      return false;
  }
#undef KV_CASE
}

}  // namespace KV_NS
}  // namespace kv
