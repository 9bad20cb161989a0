// Squeezed attention's fused decode step (squeezed.h), compiled twice: AVX2 (KV_VNNI=0: maddubs on the
// sign-folded query) and AVX-512 VNNI (KV_VNNI=1: vpdpbusd on the query + 128, corrected by 128·Σrow).
// The int8 tables (the groups' mean keys, the blocks' channel centres and half-widths) sit in blocks of
// 16 rows, 4 dims at a time ([rows/16][d/4][16][4]), so one instruction scores 16 (VNNI) or 8 (AVX2) rows
// against 4 dims of a query without horizontal sums. Scores are (float(q8·row8) · f_h) · scale_row in
// f32, the same roundings as key-sketch.ts. Scratch is the calling thread's (calls are serialised by the
// driver).
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include "squeezed.h"

#ifndef KV_SQ_PF
#define KV_SQ_PF 2
#endif

namespace kv {
namespace KV_NS {
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

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

constexpr int MAXG = 16;

/**
 * A growable scratch array. Internal linkage (anonymous namespace), unlike std::vector's members, whose
 * shared COMDAT copies the per-ISA objects would otherwise trade (build.ts localizes them).
 */
template <class T>
struct Buf {
  T* p = nullptr;
  size_t len = 0, cap = 0;
  Buf() = default;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() { std::free(p); }
  void reserve(size_t n) {
    if (n <= cap) return;
    cap = std::max(n, cap * 2);
    p = static_cast<T*>(std::realloc(p, cap * sizeof(T)));
    if (!p) throw std::bad_alloc();
  }
  void resize(size_t n) { reserve(n), len = n; }
  void assign(size_t n, T v) { resize(n), std::fill(p, p + n, v); }
  void clear() { len = 0; }
  void push_back(T v) { reserve(len + 1), p[len++] = v; }
  bool empty() const { return len == 0; }
  T& back() { return p[len - 1]; }
  size_t size() const { return len; }
  T* data() { return p; }
  T* begin() { return p; }
  T* end() { return p + len; }
  T& operator[](size_t i) { return p[i]; }
};

struct Scratch {
  Buf<float> est, ub, rank, wg, acc;
  Buf<int32_t> order, left, kb;
  Buf<uint32_t> km;
};

/**
 * logits of the 16 rows of block b of an int8 table in the keys' layout (k8 / ksum / ks) for every head:
 * out[h·stride + i] (f32, as key-sketch.ts's scoreKeys).
 */
inline void scoreBlock(const SqueezedStep& a, const int8_t* k8, const int32_t* ksum, const float* kscale,
                       const int32_t (*q4)[64], const float* f, int64_t b, float* out, int64_t stride) {
  const int G = a.G, T = a.d / 4;
  const int8_t* kb = k8 + b * T * SQ_BLOCK * 4;
#if KV_VNNI
  __m512i acc[MAXG];
  for (int h = 0; h < G; h++) acc[h] = _mm512_setzero_si512();
  for (int t = 0; t < T; t++) {
    const __m512i kv = _mm512_loadu_si512(kb + t * 64);
    for (int h = 0; h < G; h++) acc[h] = _mm512_dpbusd_epi32(acc[h], _mm512_set1_epi32(q4[h][t]), kv);
  }
  const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(ksum + b * SQ_BLOCK), 7);
  const __m512 ks = _mm512_loadu_ps(kscale + b * SQ_BLOCK);
  for (int h = 0; h < G; h++) {
    const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[h], corr));
    _mm512_storeu_ps(out + h * stride, _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(f[h])), ks));
  }
#else
  const __m256i ones = _mm256_set1_epi16(1);
  for (int half = 0; half < 2; half++) {
    __m256i acc[MAXG];
    for (int h = 0; h < G; h++) acc[h] = _mm256_setzero_si256();
    for (int t = 0; t < T; t++) {
      const __m256i kv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kb + t * 64 + half * 32));
      for (int h = 0; h < G; h++) {
        const __m256i qb = _mm256_set1_epi32(q4[h][t]);
        const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(qb), _mm256_sign_epi8(kv, qb));
        acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(p, ones));
      }
    }
    const __m256 ks = _mm256_loadu_ps(kscale + b * SQ_BLOCK + half * 8);
    for (int h = 0; h < G; h++) {
      const __m256 v = _mm256_cvtepi32_ps(acc[h]);
      _mm256_storeu_ps(out + h * stride + half * 8, _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(f[h])), ks));
    }
  }
#endif
}

/** q · k over d floats (two chains). */
inline float dot(const float* q, const float* k, int d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  for (int e = 0; e < d; e += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e), _mm256_loadu_ps(k + e), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e + 8), _mm256_loadu_ps(k + e + 8), s1);
  }
  return hsum(_mm256_add_ps(s0, s1));
}

/** The first m lanes of a block. */
inline uint32_t laneMask(int64_t m) { return m >= 32 ? ~0u : (1u << m) - 1; }

#if KV_VNNI
#define KV_DENSE avx512
#else
#define KV_DENSE avx2
#endif

/**
 * The exact part, merged online by log-sum-exp: per head the running max M, Σ exp(s − M) and Σ exp(s − M)·v
 * ([G][2][d] acc, the first d of each head). Each contiguous run of rows goes to the dense kernel's decode
 * unit (attention.cc attendUnit: four keys a dot-product tree, K prefetched ahead, V loaded once for the
 * heads), the same code as a dense step.
 */
struct Exact {
  const SqueezedStep& a;
  Attention att{};
  float* acc;
  float M[MAXG], el[MAXG];
  alignas(64) float po[MAXG * 256];
  float pm[MAXG], pl[MAXG];
  Exact(const SqueezedStep& s, float* accum) : a(s), acc(accum) {
    att.q = s.q;
    att.k = static_cast<const float*>(s.K);
    att.v = static_cast<const float*>(s.V);
    att.half = s.half;
    att.out = nullptr;
    att.lse = nullptr;
    att.nq = 1;
    att.H = s.G;
    att.Hkv = 1;
    att.d = s.d;
    att.scale = static_cast<float>(s.scale);
    att.qStride = static_cast<int64_t>(s.G) * s.d;
    att.kvHeadStride = 0;
    att.kvPosStride = s.d;
    att.qpos0 = -1;
    att.nk = static_cast<int32_t>(std::max(s.end, s.n));
    for (int h = 0; h < s.G; h++) M[h] = -INFINITY, el[h] = 0;
  }
  /** rows [k0, k1) */
  void run(int64_t k0, int64_t k1) {
    if (k1 <= k0) return;
    KV_DENSE::attendUnit(att, 0, 0, a.G, static_cast<int>(k0), static_cast<int>(k1), AttnPartial{po, pm, pl});
    merge();
  }
  /** whole 16-row blocks (ascending), in one call where the group has ≤ 4 heads, else run by run */
  void blocks(const int32_t* list, int64_t nb) {
    if (nb == 0) return;
    if (KV_DENSE::attendBlocks(a.q, static_cast<float>(a.scale), a.K, a.V, a.half, a.G, a.d, list, nb, po, pm, pl))
      return merge();
    for (int64_t t = 0; t < nb;) {
      int64_t u = t + 1;
      while (u < nb && list[u] == list[u - 1] + 1) u++;
      run(static_cast<int64_t>(list[t]) * SQ_BLOCK, static_cast<int64_t>(list[u - 1] + 1) * SQ_BLOCK);
      t = u;
    }
  }
  /** the partial (po, pm, pl) into the running sums */
  void merge() {
    const int G = a.G, d = a.d;
    for (int h = 0; h < G; h++) {
      float* o = acc + h * 2 * d;
      if (pm[h] > M[h]) {  // rescale what is there to the new max
        const float r = M[h] == -INFINITY ? 0.0f : std::exp(M[h] - pm[h]);
        el[h] *= r;
        for (int e = 0; e < d; e++) o[e] *= r;
        M[h] = pm[h];
      }
      const float w = std::exp(pm[h] - M[h]);
      el[h] += pl[h] * w;
      for (int e = 0; e < d; e++) o[e] += po[h * d + e] * w;
    }
  }
  /** lanes of the block at base (mask bits), as runs of consecutive lanes */
  void lanes(int64_t base, uint32_t mask) {
    while (mask) {
      const int i = __builtin_ctz(mask);
      const int len = __builtin_ctz(~(mask >> i));
      run(base + i, base + i + len);
      mask &= ~(laneMask(len) << i);
    }
  }
};

#if KV_VNNI
/**
 * Heads [h0, h0 + HB) of acc's left-out halves (acc [G][2][d], the second d of each head), dims
 * [c0, c0 + 16·NV): += Σ_g wg[g·G + h]·gv[g·d + …] — every group's value row read once for the heads, the
 * outputs in registers across the groups.
 */
template <int NV>
void addGroups(const float* wg, int G, int h0, int HB, int64_t groups, const float* gv, int d, int c0, float* acc) {
  __m512 o[4][NV];
  for (int i = 0; i < HB; i++)
    for (int c = 0; c < NV; c++) o[i][c] = _mm512_loadu_ps(acc + (h0 + i) * 2 * d + d + c0 + 16 * c);
  for (int64_t g = 0; g < groups; g++) {
    const float* w = wg + g * G + h0;
    __m512 v[NV];
    const float* row = gv + g * d + c0;
    for (int c = 0; c < NV; c++) v[c] = _mm512_loadu_ps(row + 16 * c);
    for (int i = 0; i < HB; i++) {
      const __m512 x = _mm512_set1_ps(w[i]);
      for (int c = 0; c < NV; c++) o[i][c] = _mm512_fmadd_ps(x, v[c], o[i][c]);
    }
  }
  for (int i = 0; i < HB; i++)
    for (int c = 0; c < NV; c++) _mm512_storeu_ps(acc + (h0 + i) * 2 * d + d + c0 + 16 * c, o[i][c]);
}

/** acc's left-out halves += Σ_g wg[g][h]·v̄_g: 64 dims × 4 heads at a time (16 registers). */
void addAllGroups(const float* wg, int G, int64_t groups, const float* gv, int d, float* acc) {
  for (int c0 = 0; c0 < d; c0 += 64)
    for (int h0 = 0; h0 < G; h0 += 4) {
      const int hb = std::min(4, G - h0), nv = std::min(64, d - c0) / 16;
      if (nv == 4) addGroups<4>(wg, G, h0, hb, groups, gv, d, c0, acc);
      else if (nv == 3) addGroups<3>(wg, G, h0, hb, groups, gv, d, c0, acc);
      else if (nv == 2) addGroups<2>(wg, G, h0, hb, groups, gv, d, c0, acc);
      else addGroups<1>(wg, G, h0, hb, groups, gv, d, c0, acc);
    }
}
#else
/** oa[0, 8·NV) += Σ_g w[g·stride]·gv[g·d + 0, 8·NV), the outputs in registers across the groups. */
template <int NV>
void addGroups(const float* w, int stride, int64_t groups, const float* gv, int d, float* oa) {
  __m256 o[NV];
  for (int k = 0; k < NV; k++) o[k] = _mm256_loadu_ps(oa + 8 * k);
  for (int64_t g = 0; g < groups; g++) {
    const float x = w[g * stride];
    if (x == 0) continue;
    const __m256 x8 = _mm256_set1_ps(x);
    const float* v = gv + g * d;
    for (int k = 0; k < NV; k++) o[k] = _mm256_fmadd_ps(x8, _mm256_loadu_ps(v + 8 * k), o[k]);
  }
  for (int k = 0; k < NV; k++) _mm256_storeu_ps(oa + 8 * k, o[k]);
}

/** acc's left-out halves += Σ_g wg[g][h]·v̄_g: per head, 64 outputs at a time in registers. */
void addAllGroups(const float* wg, int G, int64_t groups, const float* gv, int d, float* acc) {
  for (int h = 0; h < G; h++) {
    float* oa = acc + h * 2 * d + d;
    for (int c0 = 0; c0 < d; c0 += 64) {
      const int nv = std::min(64, d - c0) / 8;
      if (nv == 8) addGroups<8>(wg + h, G, groups, gv + c0, d, oa + c0);
      else if (nv == 6) addGroups<6>(wg + h, G, groups, gv + c0, d, oa + c0);
      else if (nv == 4) addGroups<4>(wg + h, G, groups, gv + c0, d, oa + c0);
      else addGroups<2>(wg + h, G, groups, gv + c0, d, oa + c0);
    }
  }
}
#endif

/** Σ over groups overlapping block b (from bfirst) of their slots as lanes of the block. */
inline uint32_t laneSel(const SqueezedStep& a, const int32_t* bfirst, int64_t b) {
  const int64_t j0 = b * SQ_BLOCK, j1 = j0 + SQ_BLOCK;
  uint32_t m = 0;
  for (int64_t g = bfirst[b]; g < a.groups && a.gStart[g] < j1; g++) {
    const int64_t s = std::max<int64_t>(a.gStart[g], j0), e = std::min<int64_t>(a.gStart[g] + a.gLen[g], j1);
    if (e > s) m |= laneMask(e - s) << (s - j0);
  }
  return m;
}

}  // namespace

int64_t squeezedStep(const SqueezedStep& a) {
  static thread_local Scratch S;
  const int G = a.G, d = a.d;
  const int64_t n = a.n, NG = a.groups, NB = (n + SQ_BLOCK - 1) / SQ_BLOCK;
  const int64_t NGp = (NG + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK, NBp = (NB + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK;
  // the group's queries in int8, one scale each (key-sketch.ts quantizeRows), 4 dims per int32; |q| too
  alignas(64) int32_t q4[MAXG][64], qa4[MAXG][64];
  float f[MAXG];
  for (int h = 0; h < G; h++) {
    const float* q = a.q + h * d;
    float m = 0;
    for (int e = 0; e < d; e++) m = std::max(m, std::fabs(q[e]));
    const float s = m / 127.0f;
    f[h] = static_cast<float>(static_cast<double>(s) * a.scale);
    int8_t q8[256];
    for (int e = 0; e < d; e++)
      q8[e] = s == 0 ? 0 : static_cast<int8_t>(std::floor(static_cast<double>(q[e]) / s + 0.5));
    int8_t qa[256];
    for (int e = 0; e < d; e++) qa[e] = static_cast<int8_t>(std::abs(q8[e]));
#if KV_VNNI
    for (int e = 0; e < d; e++) {
      q8[e] = static_cast<int8_t>(static_cast<uint8_t>(q8[e] + 128));
      qa[e] = static_cast<int8_t>(static_cast<uint8_t>(qa[e] + 128));
    }
#endif
    std::memcpy(q4[h], q8, d);
    std::memcpy(qa4[h], qa, d);
  }
  // groups: est_hg = q_h·mean_g, then e_hg = exp(est − gmax_h) in place; L_h = gmax_h + log Σ len_g·e_hg
  S.est.resize(static_cast<size_t>(G) * NGp + 8);
  float* est = S.est.data();
  for (int64_t b = 0; b < NGp / SQ_BLOCK; b++) scoreBlock(a, a.gm8, a.gmsum, a.gms, q4, f, b, est + b * SQ_BLOCK, NGp);
  float gmax[MAXG], L[MAXG];
  const int64_t g8 = NG / 8 * 8;
  for (int h = 0; h < G; h++) {
    float* eh = est + h * NGp;
    __m256 m8v = _mm256_set1_ps(-INFINITY);
    for (int64_t g = 0; g < g8; g += 8) m8v = _mm256_max_ps(m8v, _mm256_loadu_ps(eh + g));
    float m = hmax(m8v);
    for (int64_t g = g8; g < NG; g++) m = std::max(m, eh[g]);
    if (m == -INFINITY) m = 0;
    gmax[h] = m;
    const __m256 m8 = _mm256_set1_ps(m);
    __m256 z8 = _mm256_setzero_ps();
    for (int64_t g = 0; g < g8; g += 8) {
      const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(eh + g), m8));
      _mm256_storeu_ps(eh + g, e);
      const __m256 len = _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.gLen + g)));
      z8 = _mm256_fmadd_ps(len, e, z8);
    }
    double z = hsum(z8);
    for (int64_t g = g8; g < NG; g++) {
      eh[g] = std::exp(eh[g] - m);
      z += a.gLen[g] * eh[g];
    }
    L[h] = z > 0 ? static_cast<float>(m + std::log(z)) : m;
  }
  // per block: its selectable slots and the first group overlapping it (the sketch's, key-sketch.ts)
  const int32_t* bcount = a.bCount;
  const int32_t* bfirst = a.bFirst;
  int64_t selectable = 0;
  for (int64_t g = 0; g < NG; g++) selectable += a.gLen[g];
  // blocks: ub_hb = q_h·centre_b + |q_h|·half_b; rank_b = max_h (ub_hb − L_h), −∞ without selectable slots
  S.ub.resize(static_cast<size_t>(G) * NBp + 8);
  S.rank.resize(NBp);
  float* ub = S.ub.data();
  float* rank = S.rank.data();
  alignas(64) float u16[MAXG][SQ_BLOCK];
  for (int64_t b = 0; b < NBp / SQ_BLOCK; b++) {
    float* c = ub + b * SQ_BLOCK;
    scoreBlock(a, a.bm8, a.bmsum, a.bms, q4, f, b, c, NBp);
    scoreBlock(a, a.bh8, a.bhsum, a.bhs, qa4, f, b, u16[0], SQ_BLOCK);
    __m256 r0 = _mm256_set1_ps(-INFINITY), r1 = r0;
    for (int h = 0; h < G; h++) {
      float* ch = c + h * NBp;
      const __m256 l = _mm256_set1_ps(L[h]);
      const __m256 x0 = _mm256_add_ps(_mm256_loadu_ps(ch), _mm256_load_ps(u16[h]));
      const __m256 x1 = _mm256_add_ps(_mm256_loadu_ps(ch + 8), _mm256_load_ps(u16[h] + 8));
      _mm256_storeu_ps(ch, x0);
      _mm256_storeu_ps(ch + 8, x1);
      r0 = _mm256_max_ps(r0, _mm256_sub_ps(x0, l));
      r1 = _mm256_max_ps(r1, _mm256_sub_ps(x1, l));
    }
    _mm256_storeu_ps(rank + b * SQ_BLOCK, r0);
    _mm256_storeu_ps(rank + b * SQ_BLOCK + 8, r1);
  }
  // the choice (key-sketch.ts pickKeys): kept blocks and their lanes
  S.kb.clear();
  S.km.clear();
  int64_t kept = 0;
  S.order.clear();
  for (int64_t b = 0; b < NB; b++)
    if (bcount[b] > 0) S.order.push_back(static_cast<int32_t>(b));
  const int64_t cnt = static_cast<int64_t>(S.order.size());
  const float sc = static_cast<float>(a.scale);
  if (a.take < 0) {
    const double cut = a.tau / static_cast<double>(std::max<int64_t>(1, selectable));
    for (int64_t i = 0; i < cnt; i++) {
      const int32_t b = S.order[i];
      if (std::exp(static_cast<double>(rank[b])) >= cut)
        S.kb.push_back(b), S.km.push_back(laneSel(a, bfirst, b)), kept += __builtin_popcount(S.km.back());
    }
  } else if (a.take > 0) {
    auto better = [rank](int32_t x, int32_t y) { return rank[x] > rank[y] || (rank[x] == rank[y] && x < y); };
    int64_t at = 0;
    for (int64_t full = a.take / SQ_BLOCK; full > 0 && at < cnt; full = (a.take - kept) / SQ_BLOCK) {
      const int64_t to = std::min(cnt, at + full);
      if (to < cnt) std::nth_element(S.order.begin() + at, S.order.begin() + to, S.order.end(), better);
      for (; at < to; at++)
        S.kb.push_back(S.order[at]), S.km.push_back(laneSel(a, bfirst, S.order[at])), kept += __builtin_popcount(S.km.back());
    }
    if (at < cnt && kept < a.take) {
      // the next block's best slots by their exact logits (max_h q_h·k·scale − L_h, ties by slot)
      if (at + 1 < cnt) std::nth_element(S.order.begin() + at, S.order.begin() + at, S.order.end(), better);
      const int32_t b = S.order[at];
      int32_t lane[SQ_BLOCK];
      float v[SQ_BLOCK];
      int m = 0;
      for (uint32_t r = laneSel(a, bfirst, b); r; r &= r - 1) {
        const int i = __builtin_ctz(r);
        const int64_t row = static_cast<int64_t>(b) * SQ_BLOCK + i;
        alignas(64) float wide[256];
        const float* kr = static_cast<const float*>(a.K) + row * d;
        if (a.half) {
          const uint16_t* hr = static_cast<const uint16_t*>(a.K) + row * d;
          for (int e = 0; e < d; e += 8)
            _mm256_store_ps(wide + e, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hr + e))));
          kr = wide;
        }
        float best = -INFINITY;
        for (int h = 0; h < G; h++) best = std::max(best, dot(a.q + h * d, kr, d) * sc - L[h]);
        lane[m] = i, v[i] = best, m++;
      }
      std::sort(lane, lane + m, [&v](int32_t x, int32_t y) { return v[x] > v[y] || (v[x] == v[y] && x < y); });
      uint32_t mask = 0;
      for (int i = 0; i < m && kept < a.take; i++) mask |= 1u << lane[i], kept++;
      S.kb.push_back(b), S.km.push_back(mask);
    }
  }
  // kept blocks in cache order (runs of rows read forward); masks follow their blocks
  {
    const int64_t k = static_cast<int64_t>(S.kb.size());
    S.order.resize(k);
    for (int64_t i = 0; i < k; i++) S.order[i] = static_cast<int32_t>(i);
    const int32_t* kb = S.kb.data();
    std::sort(S.order.begin(), S.order.end(), [kb](int32_t x, int32_t y) { return kb[x] < kb[y]; });
    S.left.resize(2 * k);
    for (int64_t i = 0; i < k; i++) S.left[2 * i] = S.kb[S.order[i]], S.left[2 * i + 1] = static_cast<int32_t>(S.km[S.order[i]]);
    for (int64_t i = 0; i < k; i++) S.kb[i] = S.left[2 * i], S.km[i] = static_cast<uint32_t>(S.left[2 * i + 1]);
  }
  const int64_t nk = static_cast<int64_t>(S.kb.size());
  // exact attention: kept blocks (whole ones joined into runs of rows), the always-attended ranges and the
  // live tokens [n, end)
  Buf<float>& acc = S.acc;  // [G][2][d]: exact, then left-out
  acc.assign(static_cast<size_t>(G) * 2 * d, 0.0f);
  Exact ex(a, acc.data());
  constexpr uint32_t FULL = (1u << SQ_BLOCK) - 1;
  S.order.clear();  // whole blocks: one list; the partial block by its lanes
  for (int64_t t = 0; t < nk; t++)
    if (S.km[t] == FULL) S.order.push_back(S.kb[t]);
    else ex.lanes(static_cast<int64_t>(S.kb[t]) * SQ_BLOCK, S.km[t]);
  ex.blocks(S.order.data(), static_cast<int64_t>(S.order.size()));
  for (int64_t p = 0; p < a.alwaysPairs; p++) ex.run(a.always[2 * p], a.always[2 * p + 1]);
  ex.run(n, a.end);
  // the left-out share: per group its slots not kept × e_hg, with its mean value
  const bool approx = a.gvals && kept < selectable;
  double za[MAXG] = {};
  if (approx) {
    S.left.resize(NG);
    for (int64_t g = 0; g < NG; g++) S.left[g] = a.gLen[g];
    for (int64_t t = 0; t < nk; t++) {
      const int64_t j0 = static_cast<int64_t>(S.kb[t]) * SQ_BLOCK, j1 = j0 + SQ_BLOCK;
      for (int64_t g = bfirst[S.kb[t]]; g < NG && a.gStart[g] < j1; g++) {
        const int64_t s = std::max<int64_t>(a.gStart[g], j0), e = std::min<int64_t>(a.gStart[g] + a.gLen[g], j1);
        if (e > s) S.left[g] -= __builtin_popcount(S.km[t] & (laneMask(e - s) << (s - j0)));
      }
    }
    S.wg.resize(static_cast<size_t>(NG) * G);
    float* wg = S.wg.data();
    for (int64_t g = 0; g < NG; g++)
      for (int h = 0; h < G; h++) wg[g * G + h] = S.left[g] > 0 ? S.left[g] * est[h * NGp + g] : 0.0f;
    for (int h = 0; h < G; h++)
      for (int64_t g = 0; g < NG; g++) za[h] += wg[g * G + h];
    addAllGroups(wg, G, NG, a.gvals, d, acc.data());
  }
  // exact (against M_h) ⊕ left-out (against gmax_h), both moved to the larger of the two
  for (int h = 0; h < G; h++) {
    const float* o = acc.data() + h * 2 * d;
    const float* oa = acc.data() + h * 2 * d + d;
    float* dst = a.out + h * d;
    const float F = std::max(ex.M[h], gmax[h]);
    const float re = ex.M[h] == -INFINITY ? 0.0f : std::exp(ex.M[h] - F);
    const float ra = std::exp(gmax[h] - F);
    const double den = ex.el[h] * re + za[h] * ra;
    const double inv = den > 0 ? 1.0 / den : 0.0;
    for (int e = 0; e < d; e++) dst[e] = static_cast<float>((o[e] * re + oa[e] * ra) * inv);
  }
  return kept;
}

}  // namespace KV_NS
}  // namespace kv
