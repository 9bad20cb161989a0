// Squeezed attention's fused decode step (squeezed.h), compiled twice: AVX2 (KV_VNNI=0: maddubs on the
// sign-folded query) and AVX-512 VNNI (KV_VNNI=1: vpdpbusd). The keys' int8 copy is quad-major
// ([d/4][npad][4], + 128): a step scores its chosen quads of channels (SparQ's subset), each a contiguous
// stream, one instruction 16 (VNNI: the keys unsigned, corrected by 128·Σ q8 over the quads) or 8 (AVX2)
// keys against 4 channels of a query without horizontal sums. The prefilter's group tables sit in
// blocks of 16 rows, 4 dims at a time ([rows/16][d/4][16][4]; vpdpbusd on the query + 128, corrected
// by 128·Σk). Logits are
// (float(q8·k8) · f_h) · ks_j in f32, the same roundings as key-sketch.ts. Scratch is the calling
// thread's (calls are serialised by the driver).
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include "squeezed.h"

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

#if KV_VNNI
/** exp8's polynomial over 16 lanes (the same operations, so the same values lane by lane). */
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

#endif

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
  Buf<float> logit, w, sel, est, ub, wg, bs;
  Buf<int32_t> blocks, order, kb;
  Buf<uint8_t> cand;
  Buf<uint64_t> rank;  // pickBlocks' rank keys
  Buf<uint16_t> vm;  // [compact blocks] candidate lanes (VNNI scoring)
  Buf<float> bm;     // [G][compact blocks, padded to 16] each block's best logit
  Buf<float> cg;     // [groups] slots left out
  Buf<float> gest;   // [G][groups padded to 16] q · mean key, then exp(· − R)
  Buf<uint16_t> kmask, gvm;  // [compact blocks] kept lanes; [group blocks] real groups' lanes
  Buf<int32_t> gblk;         // [group blocks] 0, 1, …
};

#if !KV_VNNI
/**
 * AVX2 int8 scoring of 8 keys: out[h·stride + i] = float(Σ_t q4[h][t] · keys(t)[i]) · f_h · ks[i] (i < 8),
 * where keys(t) is 32 bytes: 4 signed channels of each of the 8 keys at step t, and q4[h][t] the head's
 * matching 4 query bytes (the non-VNNI half-block of both scorers below).
 */
template <typename Keys>
inline void dot8x4(int G, int T, Keys keys, const int32_t (*q4)[64], const float* f, const float* ks, float* out,
                   int64_t stride) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MAXG];
  for (int h = 0; h < G; h++) acc[h] = _mm256_setzero_si256();
  for (int t = 0; t < T; t++) {
    const __m256i kv = keys(t);
    for (int h = 0; h < G; h++) {
      const __m256i qb = _mm256_set1_epi32(q4[h][t]);
      const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(qb), _mm256_sign_epi8(kv, qb));
      acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(p, ones));
    }
  }
  const __m256 kscale = _mm256_loadu_ps(ks);
  for (int h = 0; h < G; h++) {
    const __m256 v = _mm256_cvtepi32_ps(acc[h]);
    _mm256_storeu_ps(out + h * stride, _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(f[h])), kscale));
  }
}
#endif

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
  for (int half = 0; half < 2; half++)
    dot8x4(
        G, T, [&](int t) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kb + t * 64 + half * 32)); },
        q4, f, kscale + b * SQ_BLOCK + half * 8, out + half * 8, stride);
#endif
}

/** A step's channel subset: the chosen quads (ascending) and the heads' int8 query over them. */
struct Quads {
  int Q = 0;
  int32_t sel[64];
  alignas(64) int32_t q4[MAXG][64];  // [h][k]: the 4 query bytes (signed) of quad sel[k]
  int32_t corr[MAXG];                // 128·Σ of those bytes (VNNI: the keys' + 128)
};

void setQuads(const SqueezedStep& a, const int8_t (*q8)[256], const int32_t* sel, int Q, Quads& out);

/**
 * key-sketch.ts pickQuads: quads ranked by Σ_h Σ_{p∈quad} |q8_h,perm[p]|·cw[p] (doubles, that order;
 * ties by quad), the best a.quads kept, ascending. q8: [G][256] the heads' int8 query in channel order.
 */
void pickQuads(const SqueezedStep& a, const int8_t (*q8)[256], Quads& out) {
  const int T = a.d / 4, G = a.G;
  double score[64];
  int32_t order[64];
  for (int t = 0; t < T; t++) {
    double acc = 0;
    for (int h = 0; h < G; h++)
      for (int i = 0; i < 4; i++) acc += std::abs(static_cast<int>(q8[h][a.perm[4 * t + i]])) * static_cast<double>(a.cw[4 * t + i]);
    score[t] = acc;
    order[t] = t;
  }
  const int Q = std::min(a.quads, T);
  if (Q < T)
    std::partial_sort(order, order + Q, order + T,
                      [&score](int32_t x, int32_t y) { return score[x] > score[y] || (score[x] == score[y] && x < y); });
  std::sort(order, order + Q);
  setQuads(a, q8, order, Q, out);
}

/** out: quads sel[0 … Q) and the heads' query bytes over them. */
void setQuads(const SqueezedStep& a, const int8_t (*q8)[256], const int32_t* sel, int Q, Quads& out) {
  out.Q = Q;
  for (int k = 0; k < Q; k++) out.sel[k] = sel[k];
  for (int h = 0; h < a.G; h++) {
    int32_t c = 0;
    for (int k = 0; k < Q; k++) {
      uint32_t packed = 0;
      for (int i = 0; i < 4; i++) {
        const int8_t x = q8[h][a.perm[4 * sel[k] + i]];
        c += x;
        packed |= static_cast<uint32_t>(static_cast<uint8_t>(x)) << (8 * i);
      }
      out.q4[h][k] = static_cast<int32_t>(packed);
    }
    out.corr[h] = 128 * c;
  }
}

/**
 * logits of the 16 keys of block b over the chosen quads for every head: out[h·stride + i] =
 * (float(Σ q8·k8) · f_h) · ks_j (f32, as key-sketch.ts's scoreKeys).
 */
inline void scoreQuads(const uint8_t* k8, const float* kscale, int G, const Quads& qd, const float* f,
                       int64_t npad, int64_t b, float* out, int64_t stride) {
  const uint8_t* kb = k8 + b * SQ_BLOCK * 4;
#if KV_VNNI
  __m512i acc[MAXG];
  for (int h = 0; h < G; h++) acc[h] = _mm512_set1_epi32(-qd.corr[h]);
  for (int k = 0; k < qd.Q; k++) {
    const __m512i kv = _mm512_loadu_si512(kb + qd.sel[k] * npad * 4);
    for (int h = 0; h < G; h++) acc[h] = _mm512_dpbusd_epi32(acc[h], kv, _mm512_set1_epi32(qd.q4[h][k]));
  }
  const __m512 ks = _mm512_loadu_ps(kscale + b * SQ_BLOCK);
  for (int h = 0; h < G; h++) {
    const __m512 v = _mm512_cvtepi32_ps(acc[h]);
    _mm512_storeu_ps(out + h * stride, _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(f[h])), ks));
  }
#else
  // the stored bytes are key + 128: flip the top bit back to the signed key
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int half = 0; half < 2; half++)
    dot8x4(
        G, qd.Q,
        [&](int k) {
          return _mm256_xor_si256(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kb + qd.sel[k] * npad * 4 + half * 32)), bias);
        },
        qd.q4, f, kscale + b * SQ_BLOCK + half * 8, out + half * 8, stride);
#endif
}

#if KV_VNNI
/** Compact blocks ahead whose chosen quads the scoring prefetches: 8 streams of one line each per block
 * outrun the hardware prefetcher (measured at 32K: half the scoring time). */
constexpr int SCORE_AHEAD = 32;

/**
 * scoreQuads over compact blocks 0 … nb (cache block blocks[i]), the candidate lanes vm[i] kept and −∞
 * elsewhere: logits out[h·stride + 16i + lane], each head's max hmax[h] and (bm not null) each block's
 * bm[h·bmStride + i]. GG heads unrolled (0: Gr at run time) so the accumulators and maxima stay in registers.
 */
template <int GG>
void scoreList(const uint8_t* k8, const float* kscale, int Gr, const Quads& qd, const float* f, int64_t npad,
               const int32_t* blocks, const uint16_t* vm, int64_t nb, float* out, int64_t stride, float* hmax,
               float* bm, int64_t bmStride) {
  constexpr int GM = GG == 0 ? MAXG : GG;
  const int G = GG == 0 ? Gr : GG;
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 hm[GM];
  for (int h = 0; h < G; h++) hm[h] = ninf;
  for (int64_t i = 0; i < nb; i++) {
    if (i + SCORE_AHEAD < nb) {
      const uint8_t* nx = k8 + static_cast<int64_t>(blocks[i + SCORE_AHEAD]) * SQ_BLOCK * 4;
      for (int k = 0; k < qd.Q; k++) _mm_prefetch(reinterpret_cast<const char*>(nx + qd.sel[k] * npad * 4), _MM_HINT_T0);
    }
    const int64_t b = blocks[i];
    const uint8_t* kb = k8 + b * SQ_BLOCK * 4;
    __m512i acc[GM];
    for (int h = 0; h < G; h++) acc[h] = _mm512_set1_epi32(-qd.corr[h]);
    for (int k = 0; k < qd.Q; k++) {
      const __m512i kv = _mm512_loadu_si512(kb + qd.sel[k] * npad * 4);
      for (int h = 0; h < G; h++) acc[h] = _mm512_dpbusd_epi32(acc[h], kv, _mm512_set1_epi32(qd.q4[h][k]));
    }
    const __m512 ks = _mm512_loadu_ps(kscale + b * SQ_BLOCK);
    for (int h = 0; h < G; h++) {
      const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[h]), _mm512_set1_ps(f[h])), ks);
      const __m512 m = _mm512_mask_blend_ps(static_cast<__mmask16>(vm[i]), ninf, v);
      _mm512_storeu_ps(out + h * stride + i * SQ_BLOCK, m);
      hm[h] = _mm512_max_ps(hm[h], m);
      if (bm) bm[h * bmStride + i] = _mm512_reduce_max_ps(m);
    }
  }
  for (int h = 0; h < G; h++) hmax[h] = _mm512_reduce_max_ps(hm[h]);
}

/** scoreList with the group's head count unrolled where it is a common one. */
void scoreAll(const uint8_t* k8, const float* kscale, int G, const Quads& qd, const float* f, int64_t npad,
              const int32_t* blocks, const uint16_t* vm, int64_t nb, float* out, int64_t stride, float* hmax,
              float* bm = nullptr, int64_t bmStride = 0) {
  switch (G) {
#define KV_SCORE(GG) \
  case GG:           \
    return scoreList<GG>(k8, kscale, G, qd, f, npad, blocks, vm, nb, out, stride, hmax, bm, bmStride);
    KV_SCORE(1)
    KV_SCORE(2)
    KV_SCORE(3)
    KV_SCORE(4)
    KV_SCORE(6)
    KV_SCORE(8)
#undef KV_SCORE
    default:
      return scoreList<0>(k8, kscale, G, qd, f, npad, blocks, vm, nb, out, stride, hmax, bm, bmStride);
  }
}
#endif

/**
 * The prefilter's group pass: est_hg = q_h·mean_g and ub_hg = est_hg + |q_h|·spread_g (an upper bound of
 * every member's logit, up to int8 rounding), both scored like the keys from int8 tables; each group's
 * rank score max_h (ub_hg − L_h), L_h the clustered log-sum-exp log Σ_g len_g·exp(est_hg). Out, rows of
 * stride NGp (groups padded to 16): em [G][NGp] = exp(est − M_h), M [G] = max_g est_hg, score [groups];
 * ub scratch [G][NGp]. qa4: |q| in int8 as q4.
 */
void groupPass(const SqueezedStep& a, const int32_t (*q4)[64], const int32_t (*qa4)[64], const float* f,
               int64_t NGp, float* em, float* ub, float* score, float* M) {
  const int G = a.G;
  const int64_t NG = a.groups;
  float* est = em;
  for (int64_t b = 0; b < NGp / SQ_BLOCK; b++) {
    scoreBlock(a, a.gm8, a.gmsum, a.gms, q4, f, b, est + b * SQ_BLOCK, NGp);
    scoreBlock(a, a.gs8, a.gssum, a.gss, qa4, f, b, ub + b * SQ_BLOCK, NGp);
  }
  for (int h = 0; h < G; h++)
    for (int64_t g = 0; g < NG; g++) ub[h * NGp + g] += est[h * NGp + g];
  for (int64_t g = 0; g < NG; g++) score[g] = -INFINITY;
  const int64_t g8 = NG / 8 * 8;
  for (int h = 0; h < G; h++) {
    float* eh = est + h * NGp;
    float m = -INFINITY;
    for (int64_t g = 0; g < NG; g++) m = std::max(m, eh[g]);
    M[h] = m;
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
    const float L = static_cast<float>(m + std::log(z));
    for (int64_t g = 0; g < NG; g++) score[g] = std::max(score[g], ub[h * NGp + g] - L);
  }
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
    att.q8 = s.q8;
    att.ks = s.Ks;
    att.vs = s.Vs;
    att.scaleHeadStride = 0;
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
    if (KV_DENSE::attendBlocks(a.q, static_cast<float>(a.scale), a.K, a.V, a.half, a.q8 ? a.Ks : nullptr,
                               a.q8 ? a.Vs : nullptr, a.G, a.d, list, nb, po, pm, pl))
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
void addGroups(const float* wg, int G, int h0, int HB, int64_t groups, const uint16_t* gv, int d, int c0, float* acc) {
  __m512 o[4][NV];
  for (int i = 0; i < HB; i++)
    for (int c = 0; c < NV; c++) o[i][c] = _mm512_loadu_ps(acc + (h0 + i) * 2 * d + d + c0 + 16 * c);
  for (int64_t g = 0; g < groups; g++) {
    const float* w = wg + g * G + h0;
    __m512 v[NV];
    const uint16_t* row = gv + g * d + c0;
    for (int c = 0; c < NV; c++) v[c] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 16 * c)));
    for (int i = 0; i < HB; i++) {
      const __m512 x = _mm512_set1_ps(w[i]);
      for (int c = 0; c < NV; c++) o[i][c] = _mm512_fmadd_ps(x, v[c], o[i][c]);
    }
  }
  for (int i = 0; i < HB; i++)
    for (int c = 0; c < NV; c++) _mm512_storeu_ps(acc + (h0 + i) * 2 * d + d + c0 + 16 * c, o[i][c]);
}

/** acc's left-out halves += Σ_g wg[g][h]·v̄_g: 64 dims × 4 heads at a time (16 registers). */
void addAllGroups(const float* wg, int G, int64_t groups, const uint16_t* gv, int d, float* acc) {
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
void addGroups(const float* w, int stride, int64_t groups, const uint16_t* gv, int d, float* oa) {
  __m256 o[NV];
  for (int k = 0; k < NV; k++) o[k] = _mm256_loadu_ps(oa + 8 * k);
  for (int64_t g = 0; g < groups; g++) {
    const float x = w[g * stride];
    if (x == 0) continue;
    const __m256 x8 = _mm256_set1_ps(x);
    const uint16_t* v = gv + g * d;
    for (int k = 0; k < NV; k++)
      o[k] = _mm256_fmadd_ps(x8, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + 8 * k))), o[k]);
  }
  for (int k = 0; k < NV; k++) _mm256_storeu_ps(oa + 8 * k, o[k]);
}

/** acc's left-out halves += Σ_g wg[g][h]·v̄_g: per head, 64 outputs at a time in registers. */
void addAllGroups(const float* wg, int G, int64_t groups, const uint16_t* gv, int d, float* acc) {
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

/** A block's rank key: ascending keys = descending scores, ties by ascending block (bits of a finite score). */
inline uint64_t rankKey(float score, int64_t block) {
  uint32_t u;
  std::memcpy(&u, &score, 4);
  const uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(~asc) << 32) | static_cast<uint32_t>(block);
}

/**
 * The budget's choice (key-sketch.ts pickKeys): compact blocks ranked by their best candidate's log weight
 * S.bs[i] (−∞: no candidate; ties by block, i.e. by cache block: compact blocks ascend), taken in rounds
 * while ⌊(take − kept)/16⌋ > 0 (each round that many more blocks, every candidate of them kept: S.vm[i]),
 * then the next block's best candidates (ties by slot) up to take. lanes(i, w): block i's 16 slot log
 * weights (−∞ off the candidates) into w. Sets the kept lanes S.kmask (zeroed by the caller); returns the
 * keys kept.
 */
template <typename Lanes>
int64_t pickBlocks(Scratch& S, int64_t nb, int64_t take, Lanes lanes) {
  S.rank.clear();
  for (int64_t i = 0; i < nb; i++)
    if (S.bs[i] > -INFINITY) S.rank.push_back(rankKey(S.bs[i], i));
  const int64_t cnt = static_cast<int64_t>(S.rank.size());
  int64_t kept = 0, at = 0;
  for (int64_t full = take / SQ_BLOCK; full > 0 && at < cnt; full = (take - kept) / SQ_BLOCK) {
    const int64_t to = std::min(cnt, at + full);
    if (to < cnt) std::nth_element(S.rank.begin() + at, S.rank.begin() + to, S.rank.end());
    for (; at < to; at++) {
      const uint32_t i = static_cast<uint32_t>(S.rank[at]);
      S.kmask[i] = S.vm[i];
      kept += __builtin_popcount(S.vm[i]);
    }
  }
  if (at < cnt && kept < take) {
    if (at + 1 < cnt) std::nth_element(S.rank.begin() + at, S.rank.begin() + at, S.rank.end());
    const uint32_t i = static_cast<uint32_t>(S.rank[at]);
    alignas(64) float w[SQ_BLOCK];
    lanes(static_cast<int32_t>(i), w);
    int32_t ls[SQ_BLOCK];
    int m = 0;
    for (int k = 0; k < SQ_BLOCK; k++)
      if (w[k] > -INFINITY) ls[m++] = k;
    std::sort(ls, ls + m, [&w](int32_t x, int32_t y) { return w[x] > w[y] || (w[x] == w[y] && x < y); });
    for (int k = 0; k < m && kept < take; k++) S.kmask[i] |= static_cast<uint16_t>(1u << ls[k]), kept++;
  }
  return kept;
}

}  // namespace

int64_t squeezedStep(const SqueezedStep& a) {
  static thread_local Scratch S;
  const int G = a.G, d = a.d;
  const int64_t n = a.n, npad = (n + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK, NG = a.groups;
  const int64_t NGp = (NG + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK;
  // the group's queries in int8, one scale each (key-sketch.ts quantizeRows), 4 dims per int32
  alignas(64) int32_t q4[MAXG][64], qa4[MAXG][64];
  int8_t q8s[MAXG][256];
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
    std::memcpy(q8s[h], q8, d);
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
  Quads qd;
  pickQuads(a, q8s, qd);
  int64_t selectable = 0;
  for (int64_t g = 0; g < NG; g++) selectable += a.gLen[g];
  // candidates: every group, or (prefilter) the best-bounded groups until `want` keys
  S.cand.assign(NG, 1);
  const bool pre = a.take >= 0 && a.want >= 0 && a.gm8 && a.want < selectable;
  // mx_h: the reference of every exp (max of the candidates' logits and the groups' est); gm_h: max est
  float mx[MAXG], gm[MAXG];
  for (int h = 0; h < G; h++) mx[h] = -INFINITY, gm[h] = -INFINITY;
  if (pre) {
    S.est.resize(G * NGp);
    S.ub.resize(G * NGp);
    S.sel.resize(NG);
    groupPass(a, q4, qa4, f, NGp, S.est.data(), S.ub.data(), S.sel.data(), gm);
    // the best ⌈want·groups / selectable⌉ groups (want keys at the mean group size; key-sketch.ts prefilter)
    const int64_t top = std::min<int64_t>(NG, (a.want * NG + selectable - 1) / selectable);
    S.order.resize(NG);
    for (int64_t g = 0; g < NG; g++) S.order[g] = static_cast<int32_t>(g);
    const float* sc = S.sel.data();
    if (top < NG)
      std::nth_element(S.order.begin(), S.order.begin() + top, S.order.end(),
                       [sc](int32_t x, int32_t y) { return sc[x] > sc[y] || (sc[x] == sc[y] && x < y); });
    std::fill(S.cand.begin(), S.cand.end(), 0);
    for (int64_t i = 0; i < top; i++) S.cand[S.order[i]] = 1;
    for (int h = 0; h < G; h++) mx[h] = gm[h];
  }
  // the 16-key blocks holding candidate slots, ascending (groups are runs in slot order)
  S.blocks.clear();
  if (!pre) {
    for (int64_t b = 0; b < npad / SQ_BLOCK; b++) S.blocks.push_back(static_cast<int32_t>(b));
  } else {
    for (int64_t g = 0; g < NG; g++) {
      if (!S.cand[g] || a.gLen[g] == 0) continue;
      const int32_t b0 = a.gStart[g] / SQ_BLOCK, b1 = (a.gStart[g] + a.gLen[g] - 1) / SQ_BLOCK;
      for (int32_t b = b0; b <= b1; b++)
        if (S.blocks.empty() || S.blocks.back() < b) S.blocks.push_back(b);
    }
  }
  const int64_t nb = static_cast<int64_t>(S.blocks.size()), nc = nb * SQ_BLOCK;  // compact slots
  S.logit.resize(G * nc + 8);
  const int64_t nbp = (nb + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK;  // blocks padded to 16
  S.bm.assign(static_cast<size_t>(G) * nbp, -INFINITY);

  // per block: its candidate lanes (S.vm, a bit each), its logits (off the candidates −∞), its best
  // logit per head (S.bm [G][nbp], −∞ without a candidate) and the heads' max over them
  auto lanesOf = [&](int64_t i) -> uint32_t {
    const int64_t j0 = static_cast<int64_t>(S.blocks[i]) * SQ_BLOCK;
    uint32_t vm = 0;
    if (!pre && j0 + SQ_BLOCK <= n) {
      const __m256i g0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.grp + j0));
      const __m256i g1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.grp + j0 + 8));
      const __m256i neg = _mm256_set1_epi32(-1);
      vm = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(g0, neg)))) |
           static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(g1, neg)))) << 8;
    } else {
      for (int k = 0; k < SQ_BLOCK; k++) {
        const int64_t j = j0 + k;
        if (j < n && a.grp[j] >= 0 && S.cand[a.grp[j]]) vm |= 1u << k;
      }
    }
    return vm;
  };
  float hmx[MAXG];
  S.vm.resize(nb);
#if KV_VNNI
  for (int64_t i = 0; i < nb; i++) S.vm[i] = static_cast<uint16_t>(lanesOf(i));
  scoreAll(a.k8, a.ks, G, qd, f, npad, S.blocks.data(), S.vm.data(), nb, S.logit.data(), nc, hmx, S.bm.data(), nbp);
#else
  __m256 hm[MAXG];
  for (int h = 0; h < G; h++) hm[h] = _mm256_set1_ps(-INFINITY);
  const __m256i bitsLo = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i bitsHi = _mm256_slli_epi32(bitsLo, 8);
  for (int64_t i = 0; i < nb; i++) {
    const int64_t b = S.blocks[i];
    if (pre && i + 2 < nb) {  // candidate blocks are runs with gaps: the hardware prefetcher misses each gap
      const uint8_t* nx = a.k8 + S.blocks[i + 2] * SQ_BLOCK * 4;
      for (int k = 0; k < qd.Q; k++) _mm_prefetch(reinterpret_cast<const char*>(nx + qd.sel[k] * npad * 4), _MM_HINT_T0);
    }
    float* lb = S.logit.data() + i * SQ_BLOCK;
    scoreQuads(a.k8, a.ks, G, qd, f, npad, b, lb, nc);
    const uint32_t vm = lanesOf(i);
    S.vm[i] = static_cast<uint16_t>(vm);
    const __m256i vmv = _mm256_set1_epi32(static_cast<int>(vm));
    const __m256 on0 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(vmv, bitsLo), bitsLo));
    const __m256 on1 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(vmv, bitsHi), bitsHi));
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int h = 0; h < G; h++) {
      float* l = lb + h * nc;
      const __m256 l0 = _mm256_blendv_ps(ninf, _mm256_loadu_ps(l), on0);
      const __m256 l1 = _mm256_blendv_ps(ninf, _mm256_loadu_ps(l + 8), on1);
      if (vm != 0xffff) _mm256_storeu_ps(l, l0), _mm256_storeu_ps(l + 8, l1);
      const __m256 lm = _mm256_max_ps(l0, l1);
      hm[h] = _mm256_max_ps(hm[h], lm);
      S.bm[h * nbp + i] = hmax(lm);
    }
  }
  for (int h = 0; h < G; h++) hmx[h] = hmax(hm[h]);
#endif
  // per head the log-normalizer estimate from the block maxima (key-sketch.ts scoreKeys): lse_h = m_h +
  // log(Σ_b exp(bm_hb − m_h) + the other groups' mass where the prefilter left them out) — each block
  // counted by its best key, so within log 16 below the keys' log-sum-exp and without an exponential per key
  float lse[MAXG];
  for (int h = 0; h < G; h++) {
    float m = std::max(mx[h], hmx[h]);
    if (m == -INFINITY) m = 0;  // nothing selectable
    mx[h] = m;
    const float* bh = S.bm.data() + h * nbp;
#if KV_VNNI
    const __m512 m16 = _mm512_set1_ps(m);
    __m512 zs = _mm512_setzero_ps();
    for (int64_t i = 0; i < nbp; i += 16) zs = _mm512_add_ps(zs, exp16(_mm512_sub_ps(_mm512_loadu_ps(bh + i), m16)));
    double z = _mm512_reduce_add_ps(zs);
#else
    const __m256 m8 = _mm256_set1_ps(m);
    __m256 zs = _mm256_setzero_ps();
    for (int64_t i = 0; i < nbp; i += 8) zs = _mm256_add_ps(zs, exp8(_mm256_sub_ps(_mm256_loadu_ps(bh + i), m8)));
    double z = hsum(zs);
#endif
    if (pre) {
      double zo = 0;  // the other groups' mass, against gm_h
      const float* em = S.est.data() + h * NGp;
      for (int64_t g = 0; g < NG; g++)
        if (!S.cand[g]) zo += a.gLen[g] * em[g];
      z += zo * std::exp(gm[h] - m);
    }
    lse[h] = z > 0 ? static_cast<float>(static_cast<double>(m) + std::log(z)) : m;
  }
  // a slot's log weight: max over the group's heads of logit − lse_h (−∞ off the candidates); a block's
  // score: its best candidate's, max_h (bm_hb − lse_h)
  int64_t kept = 0;
  S.kmask.assign(nb, 0);
  auto slotLogWeights = [&](int64_t j, float* w) {  // the 16 slots of compact block j / 16
#if KV_VNNI
    __m512 best = _mm512_set1_ps(-INFINITY);
    for (int h = 0; h < G; h++)
      best = _mm512_max_ps(best, _mm512_sub_ps(_mm512_loadu_ps(S.logit.data() + h * nc + j), _mm512_set1_ps(lse[h])));
    _mm512_storeu_ps(w, best);
#else
    for (int k = 0; k < SQ_BLOCK; k += 8) {
      __m256 best = _mm256_set1_ps(-INFINITY);
      for (int h = 0; h < G; h++)
        best = _mm256_max_ps(best, _mm256_sub_ps(_mm256_loadu_ps(S.logit.data() + h * nc + j + k), _mm256_set1_ps(lse[h])));
      _mm256_storeu_ps(w + k, best);
    }
#endif
  };
  if (a.take < 0) {
    S.w.resize(nc);
    for (int64_t j = 0; j < nc; j += SQ_BLOCK) slotLogWeights(j, S.w.data() + j);
    const float cut = static_cast<float>(std::log(a.tau / static_cast<double>(std::max<int64_t>(1, selectable))));
    for (int64_t j = 0; j < nc; j++)
      if (((S.vm[j / SQ_BLOCK] >> (j % SQ_BLOCK)) & 1) && S.w[j] >= cut) S.kmask[j / SQ_BLOCK] |= static_cast<uint16_t>(1u << (j % SQ_BLOCK)), kept++;
  } else if (a.take > 0) {
    S.bs.resize(nb);
    for (int64_t i = 0; i < nb; i++) {
      float b = -INFINITY;
      for (int h = 0; h < G; h++) b = std::max(b, S.bm[h * nbp + i] - lse[h]);
      S.bs[i] = b;
    }
    kept = pickBlocks(S, nb, a.take, [&](int32_t i, float* w) { slotLogWeights(static_cast<int64_t>(i) * SQ_BLOCK, w); });
  }
  // exact attention over the kept slots — whole kept blocks (a budget keeps whole blocks; rows of a block
  // are contiguous in the cache) in one list, a block's kept lanes as runs otherwise — the always-attended
  // ranges and the live tokens [n, end), merged online by log-sum-exp (Exact)
  Buf<float>& acc = S.wg;  // [G][2][d]: exact, then left-out
  acc.assign(static_cast<size_t>(G) * 2 * d, 0.0f);
  Exact ex(a, acc.data());
  S.kb.clear();  // the compact blocks with kept lanes (S.kmask), ascending
  for (int64_t i = 0; i < nb; i++)
    if (S.kmask[i]) S.kb.push_back(static_cast<int32_t>(i));
  constexpr uint32_t FULL = (1u << SQ_BLOCK) - 1;
  S.order.clear();  // the whole kept blocks, ascending (compact blocks ascend with the cache's)
  for (int64_t t = 0; t < static_cast<int64_t>(S.kb.size()); t++)
    if (S.kmask[S.kb[t]] == FULL) S.order.push_back(S.blocks[S.kb[t]]);
    else ex.lanes(static_cast<int64_t>(S.blocks[S.kb[t]]) * SQ_BLOCK, S.kmask[S.kb[t]]);
  ex.blocks(S.order.data(), static_cast<int64_t>(S.order.size()));
  for (int64_t p = 0; p < a.alwaysPairs; p++) ex.run(a.always[2 * p], a.always[2 * p + 1]);
  ex.run(n, a.end);
  // the left-out share, clustered attention (key-sketch.ts leftOutShare): each group's slots not kept, c_g,
  // as c_g · exp(est_hg − R_h) with the group's mean value; est_hg = q_h · the group's int8 mean key over
  // every channel (scored like the keys), R_h = max_g est_hg
  const bool approx = a.gvals && a.gq && kept < selectable;
  double za[MAXG] = {};
  if (approx) {
    // c_g: the group's slots less its kept ones (kept lanes are candidates: slots of a group)
    S.cg.resize(NG);
    for (int64_t g = 0; g < NG; g++) S.cg[g] = static_cast<float>(a.gLen[g]);
    for (int64_t t = 0; t < static_cast<int64_t>(S.kb.size()); t++) {
      const int32_t* gr = a.grp + static_cast<int64_t>(S.blocks[S.kb[t]]) * SQ_BLOCK;
      for (uint32_t r = S.kmask[S.kb[t]]; r; r &= r - 1) S.cg[gr[__builtin_ctz(r)]] -= 1.0f;
    }
    Quads all;
    int32_t every[64];
    for (int t = 0; t < d / 4; t++) every[t] = t;
    setQuads(a, q8s, every, d / 4, all);
    S.gest.resize(static_cast<size_t>(G) * NGp);
    float* est = S.gest.data();
    float R[MAXG];
#if KV_VNNI
    const int64_t gb = NGp / SQ_BLOCK;  // every group block, the padding's lanes off
    S.gblk.resize(gb);
    S.gvm.resize(gb);
    for (int64_t b = 0; b < gb; b++)
      S.gblk[b] = static_cast<int32_t>(b), S.gvm[b] = static_cast<uint16_t>(laneMask(std::min<int64_t>(SQ_BLOCK, NG - b * SQ_BLOCK)));
    scoreAll(a.gq, a.gqs, G, all, f, NGp, S.gblk.data(), S.gvm.data(), gb, est, NGp, R);
#else
    for (int64_t b = 0; b < NGp / SQ_BLOCK; b++) scoreQuads(a.gq, a.gqs, G, all, f, NGp, b, est + b * SQ_BLOCK, NGp);
    for (int h = 0; h < G; h++) {
      R[h] = -INFINITY;
      for (int64_t g = 0; g < NG; g++) R[h] = std::max(R[h], est[h * NGp + g]);
    }
#endif
    S.ub.resize(static_cast<size_t>(NG) * G);
    float* wg = S.ub.data();  // [groups][G]
    for (int h = 0; h < G; h++) {
      float* eh = est + h * NGp;
#if KV_VNNI
      const __m512 R16 = _mm512_set1_ps(R[h]);
      for (int64_t g = 0; g < NGp; g += 16) _mm512_storeu_ps(eh + g, exp16(_mm512_sub_ps(_mm512_loadu_ps(eh + g), R16)));
#else
      const __m256 R8 = _mm256_set1_ps(R[h]);
      for (int64_t g = 0; g < NGp; g += 8) _mm256_storeu_ps(eh + g, exp8(_mm256_sub_ps(_mm256_loadu_ps(eh + g), R8)));
#endif
      mx[h] = R[h];
    }
    for (int64_t g = 0; g < NG; g++)  // the weights, and the heads' sums side by side
      for (int h = 0; h < G; h++) za[h] += wg[g * G + h] = S.cg[g] * est[h * NGp + g];
    addAllGroups(wg, G, NG, a.gvals, d, acc.data());
  }
  // exact (against M_h) ⊕ left-out (against mx_h), both moved to the larger of the two
  for (int h = 0; h < G; h++) {
    const float* o = acc.data() + h * 2 * d;
    const float* oa = acc.data() + h * 2 * d + d;
    float* dst = a.out + h * d;
    const float F = std::max(ex.M[h], mx[h]);
    const float re = ex.M[h] == -INFINITY ? 0.0f : std::exp(ex.M[h] - F);
    const float ra = std::exp(mx[h] - F);
    const double den = ex.el[h] * re + za[h] * ra;
    const double inv = den > 0 ? 1.0 / den : 0.0;
    for (int e = 0; e < d; e++) dst[e] = static_cast<float>((o[e] * re + oa[e] * ra) * inv);
  }
  return kept;
}

}  // namespace KV_NS
}  // namespace kv
