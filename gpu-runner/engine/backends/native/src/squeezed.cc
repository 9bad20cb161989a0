// Squeezed attention's fused decode step (squeezed.h), compiled for AVX2 (the addon's floor). Scratch is
// per call's thread (the JS thread; calls are serialised by the driver).
#include "squeezed.h"
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <vector>

namespace kv {
namespace avx2 {
namespace {

/** e^x for x ≤ 0 (Cephes' expf polynomial, relative error ~1e-7; below −87 → ~0). */
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t hsumi(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

constexpr int MAXG = 16;

struct Scratch {
  std::vector<float> logit, ex, w, sel, sc, acc;
  std::vector<int32_t> keys;
  std::vector<uint8_t> keep;
  std::vector<double> wg;
};

}  // namespace

int64_t squeezedStep(const SqueezedStep& a) {
  static thread_local Scratch S;
  const int G = a.G, d = a.d;
  const int64_t n = a.n;
  // the group's queries in int8, one scale each (key-sketch.ts quantizeRows)
  alignas(32) int16_t q16[MAXG][256];
  double f[MAXG];
  for (int h = 0; h < G; h++) {
    const float* q = a.q + h * d;
    float m = 0;
    for (int e = 0; e < d; e++) m = std::max(m, std::fabs(q[e]));
    const float s = m / 127.0f;
    f[h] = static_cast<double>(s) * a.scale;
    for (int e = 0; e < d; e++)
      q16[h][e] = s == 0 ? 0 : static_cast<int16_t>(std::floor(static_cast<double>(q[e]) / s + 0.5));
  }
  // estimated logits of every slot, per head max
  S.logit.resize(G * n);
  S.ex.resize(G * n);
  float mx[MAXG];
  for (int h = 0; h < G; h++) mx[h] = -INFINITY;
  for (int64_t j = 0; j < n; j++) {
    const int8_t* k = a.k8 + j * d;
    __m256i acc[MAXG];
    for (int h = 0; h < G; h++) acc[h] = _mm256_setzero_si256();
    for (int e = 0; e < d; e += 16) {
      const __m256i kk = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + e)));
      for (int h = 0; h < G; h++)
        acc[h] = _mm256_add_epi32(
            acc[h], _mm256_madd_epi16(kk, _mm256_load_si256(reinterpret_cast<const __m256i*>(&q16[h][e]))));
    }
    for (int h = 0; h < G; h++) {
      const float v = static_cast<float>(static_cast<double>(hsumi(acc[h])) * f[h] * static_cast<double>(a.ks[j]));
      S.logit[h * n + j] = v;
      mx[h] = std::max(mx[h], v);
    }
  }
  // e = exp(logit − max), z per head
  double z[MAXG];
  for (int h = 0; h < G; h++) {
    const float* l = S.logit.data() + h * n;
    float* ex = S.ex.data() + h * n;
    const __m256 m8 = _mm256_set1_ps(mx[h]);
    __m256 zs = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(l + j), m8));
      _mm256_storeu_ps(ex + j, v);
      zs = _mm256_add_ps(zs, v);
    }
    double zz = hsum(zs);
    for (; j < n; j++) {
      ex[j] = std::exp(l[j] - mx[h]);
      zz += ex[j];
    }
    z[h] = zz;
  }
  // weight of each selectable slot: the best estimated softmax weight over the group's heads
  S.w.resize(n);
  S.keep.assign(n, 0);
  int64_t selectable = 0;
  for (int64_t j = 0; j < n; j++) {
    if (a.grp[j] < 0) {
      S.w[j] = -1;
      continue;
    }
    selectable++;
    float best = 0;
    for (int h = 0; h < G; h++) best = std::max(best, static_cast<float>(S.ex[h * n + j] / z[h]));
    S.w[j] = best;
  }
  int64_t kept = 0;
  if (a.take < 0) {
    const double cut = a.tau / static_cast<double>(std::max<int64_t>(1, selectable));
    for (int64_t j = 0; j < n; j++)
      if (a.grp[j] >= 0 && S.w[j] >= cut) S.keep[j] = 1, kept++;
  } else if (a.take > 0) {
    const int64_t take = std::min(a.take, selectable);
    S.sel.clear();
    for (int64_t j = 0; j < n; j++)
      if (a.grp[j] >= 0) S.sel.push_back(S.w[j]);
    std::nth_element(S.sel.begin(), S.sel.begin() + (take - 1), S.sel.end(), std::greater<float>());
    const float t = S.sel[take - 1];
    int64_t above = 0;
    for (int64_t j = 0; j < n; j++) above += a.grp[j] >= 0 && S.w[j] > t;
    int64_t ties = take - above;
    for (int64_t j = 0; j < n; j++) {
      if (a.grp[j] < 0) continue;
      if (S.w[j] > t || (S.w[j] == t && ties-- > 0)) S.keep[j] = 1, kept++;
    }
  }
  // exact attention over kept slots, always-attended ranges and live tokens [n, end)
  S.keys.clear();
  for (int64_t j = 0; j < n; j++)
    if (S.keep[j]) S.keys.push_back(static_cast<int32_t>(j));
  for (int64_t p = 0; p < a.alwaysPairs; p++)
    for (int32_t j = a.always[2 * p]; j < a.always[2 * p + 1]; j++) S.keys.push_back(j);
  for (int64_t j = n; j < a.end; j++) S.keys.push_back(static_cast<int32_t>(j));
  const int64_t nk = static_cast<int64_t>(S.keys.size());
  S.sc.resize(G * nk);
  const float sc = static_cast<float>(a.scale);
  float em[MAXG];
  for (int h = 0; h < G; h++) em[h] = -INFINITY;
  for (int64_t i = 0; i < nk; i++) {
    const float* kr = a.K + static_cast<int64_t>(S.keys[i]) * d;
    for (int h = 0; h < G; h++) {
      const float* q = a.q + h * d;
      __m256 s = _mm256_setzero_ps();
      for (int e = 0; e < d; e += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(q + e), _mm256_loadu_ps(kr + e), s);
      const float v = hsum(s) * sc;
      S.sc[h * nk + i] = v;
      em[h] = std::max(em[h], v);
    }
  }
  S.acc.assign(static_cast<size_t>(G) * d * 2, 0.0f);
  float el[MAXG];
  for (int h = 0; h < G; h++) {
    float* o = S.acc.data() + h * d;
    float l = 0;
    for (int64_t i = 0; i < nk; i++) {
      const float p = std::exp(S.sc[h * nk + i] - em[h]);
      l += p;
      const float* vr = a.V + static_cast<int64_t>(S.keys[i]) * d;
      const __m256 p8 = _mm256_set1_ps(p);
      for (int e = 0; e < d; e += 8)
        _mm256_storeu_ps(o + e, _mm256_fmadd_ps(p8, _mm256_loadu_ps(vr + e), _mm256_loadu_ps(o + e)));
    }
    el[h] = l;
  }
  // the left-out slots' share: Σ exp(logit − max) per group × the group's mean value
  const bool approx = a.gvals && kept < selectable;
  for (int h = 0; h < G; h++) {
    const float* o = S.acc.data() + h * d;
    float* dst = a.out + h * d;
    double za = 0;
    float* oa = S.acc.data() + (G + h) * d;
    if (approx) {
      S.wg.assign(a.groups, 0.0);
      const float* ex = S.ex.data() + h * n;
      for (int64_t j = 0; j < n; j++)
        if (!S.keep[j] && a.grp[j] >= 0) S.wg[a.grp[j]] += ex[j];
      for (int64_t c = 0; c < a.groups; c++) {
        if (S.wg[c] == 0) continue;
        za += S.wg[c];
        const __m256 w8 = _mm256_set1_ps(static_cast<float>(S.wg[c]));
        const float* gv = a.gvals + c * d;
        for (int e = 0; e < d; e += 8)
          _mm256_storeu_ps(oa + e, _mm256_fmadd_ps(w8, _mm256_loadu_ps(gv + e), _mm256_loadu_ps(oa + e)));
      }
    }
    if (!(za > 0)) {
      const float inv = el[h] > 0 ? 1.0f / el[h] : 0.0f;
      for (int e = 0; e < d; e++) dst[e] = o[e] * inv;
      continue;
    }
    const double M = std::max(static_cast<double>(em[h]), static_cast<double>(mx[h]));
    const double we = el[h] > 0 ? std::exp(em[h] - M) : 0.0;
    const double wa = std::exp(mx[h] - M);
    const double den = we * el[h] + wa * za;
    for (int e = 0; e < d; e++) dst[e] = static_cast<float>((we * o[e] + wa * oa[e]) / den);
  }
  return kept;
}

}  // namespace avx2
}  // namespace kv
