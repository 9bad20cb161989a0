// Flash-style attention for one work unit, compiled once per ISA level (simd.h): up to 4 vectors of
// rows (row r = query r0/G.., each a (query, head) pair of kv head g, GQA) against keys [k0, k1) in
// tiles of BK. Scores are computed transposed, St[key][row], by broadcasting key elements against
// q packed as Qt[dim][row] (scaled), so the online softmax (running max m, sum l, rescale alpha) is
// vertical over rows, with no horizontal reductions; then O[row][:] = O·alpha + Σ_key p · V[key][:].
// Units of a few rows (decode) take attendFew instead: dot products per key, softmax along the keys.
// The unit leaves O unnormalised with m and l (AttnPartial); the driver (attention-driver.cc) normalises or
// merges several key ranges by log-sum-exp.
// An f16 cache (Attention::half): attendFew widens K/V vectors as it loads them (vcvtph2ps: a decode step
// reads half the bytes); attendRows widens each BK-key tile of K and V into f32 scratch first.
// An int8 cache (Attention::q8, a scale per row): attendFew converts the codes as it loads them and applies
// the scales once per key (a key's scale multiplies its dot products; a value's scale its probability), so
// a decode step reads a quarter of f32's bytes (plus 4 per row); attendRows dequantizes each tile to scratch.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <type_traits>
#include "kernels.h"
#include "simd.h"

namespace kv {
namespace KV_NS {

namespace {
constexpr int W = V::W;
constexpr int RMAX = 4 * W;
constexpr int BK = 64;
constexpr int ACC = W == 16 ? 24 : 12;  // accumulator registers
// Units of at most this many rows (decode: one query's heads of a kv group) run attendFew: key by key as
// dot products (d/W FMAs and one reduction per key and row), softmax along the keys, instead of
// broadcasting key elements against row lanes that would be mostly empty.
constexpr int DOT_ROWS = 4;
// few-row units prefetch K this many keys ahead (1-thread CPU time of a 16-sequence decode step's
// attention over 560 keys: −23%; 8 or 32 keys measured the same)
constexpr int PF_KEYS = 16;

struct Scratch {
  float* qt;      // [256][RMAX]
  float* st;      // [BK][RMAX]
  int32_t* lim;   // [RMAX]
  float* alpha;   // [RMAX]
  float* qr;      // [DOT_ROWS][256] scaled q rows (few-row units)
  float* kt;      // [BK][256] a tile of K widened from halves or int8 (attendRows over an f16/int8 cache)
  float* vt;      // [BK][256] the same tile of V
};
Scratch& scratch() {
  static thread_local Scratch s = [] {
    Scratch t;
    t.qt = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * 256 * RMAX));
    t.st = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * BK * RMAX));
    t.lim = static_cast<int32_t*>(std::aligned_alloc(64, sizeof(int32_t) * RMAX));
    t.alpha = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * RMAX));
    t.qr = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * DOT_ROWS * 256));
    t.kt = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * BK * 256));
    t.vt = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * BK * 256));
    return t;
  }();
  return s;
}

/** rows [j0, j0 + nb) of one kv head's halves (position stride ps) → dst [nb][d] f32 */
void widenTile(const uint16_t* src, int64_t ps, int j0, int nb, int d, float* dst) {
  for (int j = 0; j < nb; j++) {
    const uint16_t* r = src + static_cast<int64_t>(j0 + j) * ps;
    for (int c = 0; c < d; c += W) V::store(dst + j * d + c, V::half(r + c));
  }
}

/** rows [j0, j0 + nb) of one kv head's int8 codes (position stride ps) with scales sc[pos] → dst [nb][d] f32 */
void widenTileQ8(const int8_t* src, const float* sc, int64_t ps, int j0, int nb, int d, float* dst) {
  for (int j = 0; j < nb; j++) {
    const int8_t* r = src + static_cast<int64_t>(j0 + j) * ps;
    const V::v s = V::set1(sc[j0 + j]);
    for (int c = 0; c < d; c += W) V::store(dst + j * d + c, V::mul(s, loadKV(r + c)));
  }
}

/** St[j][·] for keys kp[j·ks], j in [0, nb): MK keys per pass against RV row vectors of Qt. */
template <int RV>
void scores(const float* qt, const float* kp, int64_t ks, int d, int nb, float* st) {
  constexpr int MK = ACC / RV;
  int j = 0;
  for (; j + MK <= nb; j += MK) {
    V::v acc[MK][RV];
    for (int a = 0; a < MK; a++)
      for (int v = 0; v < RV; v++) acc[a][v] = V::zero();
    const float* kj = kp + j * ks;
    for (int dd = 0; dd < d; dd++) {
      V::v qv[RV];
      for (int v = 0; v < RV; v++) qv[v] = V::load(qt + dd * RMAX + v * W);
#pragma GCC unroll 24
      for (int a = 0; a < MK; a++) {
        const V::v kb = V::set1(kj[a * ks + dd]);
        for (int v = 0; v < RV; v++) acc[a][v] = V::fma(kb, qv[v], acc[a][v]);
      }
    }
    for (int a = 0; a < MK; a++)
      for (int v = 0; v < RV; v++) V::store(st + (j + a) * RMAX + v * W, acc[a][v]);
  }
  for (; j < nb; j++) {
    V::v acc[RV];
    for (int v = 0; v < RV; v++) acc[v] = V::zero();
    const float* kj = kp + j * ks;
    for (int dd = 0; dd < d; dd++) {
      const V::v kb = V::set1(kj[dd]);
      for (int v = 0; v < RV; v++) acc[v] = V::fma(kb, V::load(qt + dd * RMAX + v * W), acc[v]);
    }
    for (int v = 0; v < RV; v++) V::store(st + j * RMAX + v * W, acc[v]);
  }
}

/** O rows [r, r + RO) × DC vectors of columns at c: O = O·alpha + Σ_j St[j][row] · V[j][c..]. */
template <int RO, int DC>
void accumulate(float* o, int d, int r, int c, const float* alpha, const float* st, const float* vp, int64_t vs,
                int nb) {
  V::v acc[RO][DC];
  for (int t = 0; t < RO; t++) {
    const V::v al = V::set1(alpha[r + t]);
    for (int u = 0; u < DC; u++) acc[t][u] = V::mul(V::load(o + (r + t) * d + c + u * W), al);
  }
  for (int j = 0; j < nb; j++) {
    V::v vv[DC];
    for (int u = 0; u < DC; u++) vv[u] = V::load(vp + j * vs + c + u * W);
    for (int t = 0; t < RO; t++) {
      const V::v p = V::set1(st[j * RMAX + r + t]);
      for (int u = 0; u < DC; u++) acc[t][u] = V::fma(p, vv[u], acc[t][u]);
    }
  }
  for (int t = 0; t < RO; t++)
    for (int u = 0; u < DC; u++) V::store(o + (r + t) * d + c + u * W, acc[t][u]);
}

template <int RO>
void accumulateRows(float* o, int d, int r, const float* alpha, const float* st, const float* vp, int64_t vs,
                    int nb) {
  const int dv = d / W;
  int c = 0;
  for (; c + 4 <= dv; c += 4) accumulate<RO, 4>(o, d, r, c * W, alpha, st, vp, vs, nb);
  switch (dv - c) {
    case 3: accumulate<RO, 3>(o, d, r, c * W, alpha, st, vp, vs, nb); break;
    case 2: accumulate<RO, 2>(o, d, r, c * W, alpha, st, vp, vs, nb); break;
    case 1: accumulate<RO, 1>(o, d, r, c * W, alpha, st, vp, vs, nb); break;
    default: break;
  }
}

constexpr int RO = W == 16 ? 4 : 2;

template <int RV>
void attendRows(const Attention& a, int g, int r0, int R, int k0, int k1, const AttnPartial& out) {
  Scratch& s = scratch();
  const int d = a.d;
  const int G = a.H / a.Hkv;
  // Qt[dim][row] = q · scale; row limits from the causal mask
  int kmax = k0, kmin = k1;
  for (int r = 0; r < RV * W; r++) {
    if (r < R) {
      const int flat = r0 + r;
      const int i = flat / G;
      const int h = g * G + flat % G;
      const float* qp = a.q + i * a.qStride + h * d;
      for (int dd = 0; dd < d; dd++) s.qt[dd * RMAX + r] = qp[dd] * a.scale;
      const int lim = a.qpos0 >= 0 ? std::min(a.nk, a.qpos0 + i + 1) : a.nk;
      s.lim[r] = lim;
      kmax = std::max(kmax, std::min(lim, k1));
      kmin = std::min(kmin, lim);
    } else {
      for (int dd = 0; dd < d; dd++) s.qt[dd * RMAX + r] = 0;
      s.lim[r] = 0;
    }
    out.m[r] = -1e30f;
    out.l[r] = 0;
  }
  std::fill(out.o, out.o + static_cast<int64_t>(RV * W) * d, 0.0f);
  const float* kb = a.k + g * a.kvHeadStride;
  const float* vb = a.v + g * a.kvHeadStride;
  const uint16_t* khb = reinterpret_cast<const uint16_t*>(a.k) + g * a.kvHeadStride;
  const uint16_t* vhb = reinterpret_cast<const uint16_t*>(a.v) + g * a.kvHeadStride;
  const int8_t* kqb = reinterpret_cast<const int8_t*>(a.k) + g * a.kvHeadStride;
  const int8_t* vqb = reinterpret_cast<const int8_t*>(a.v) + g * a.kvHeadStride;
  // f32 tile rows and their stride: the cache's own, or the widened scratch of an f16 / int8 cache
  const bool typed = a.half || a.q8;
  const int64_t ts = typed ? d : a.kvPosStride;
  for (int j0 = k0; j0 < kmax; j0 += BK) {
    const int nb = std::min(BK, kmax - j0);
    if (a.half) {
      widenTile(khb, a.kvPosStride, j0, nb, d, s.kt);
      widenTile(vhb, a.kvPosStride, j0, nb, d, s.vt);
    } else if (a.q8) {
      widenTileQ8(kqb, a.ks + g * a.scaleHeadStride, a.kvPosStride, j0, nb, d, s.kt);
      widenTileQ8(vqb, a.vs + g * a.scaleHeadStride, a.kvPosStride, j0, nb, d, s.vt);
    }
    scores<RV>(s.qt, typed ? s.kt : kb + j0 * a.kvPosStride, ts, d, nb, s.st);
    if (j0 + nb > kmin)
      for (int j = 0; j < nb; j++)
        for (int v = 0; v < RV; v++)
          V::store(s.st + j * RMAX + v * W, V::maskLess(V::load(s.st + j * RMAX + v * W), j0 + j, s.lim + v * W));
    for (int v = 0; v < RV; v++) {
      V::v mx = V::load(out.m + v * W);
      for (int j = 0; j < nb; j++) mx = V::max(mx, V::load(s.st + j * RMAX + v * W));
      const V::v mold = V::load(out.m + v * W);
      V::v sum = V::zero();
      for (int j = 0; j < nb; j++) {
        const V::v p = vexp(V::sub(V::load(s.st + j * RMAX + v * W), mx));
        V::store(s.st + j * RMAX + v * W, p);
        sum = V::add(sum, p);
      }
      const V::v al = vexp(V::sub(mold, mx));
      V::store(s.alpha + v * W, al);
      V::store(out.l + v * W, V::fma(V::load(out.l + v * W), al, sum));
      V::store(out.m + v * W, mx);
    }
    const float* vp = typed ? s.vt : vb + j0 * a.kvPosStride;
    int r = 0;
    for (; r + RO <= R; r += RO) accumulateRows<RO>(out.o, d, r, s.alpha, s.st, vp, ts, nb);
    for (; r < R; r++) accumulateRows<1>(out.o, d, r, s.alpha, s.st, vp, ts, nb);
  }
}
/**
 * O rows [0, R) × DC vectors of columns at c: O = O·alpha + Σ_j P[r][j] · V[j][c..] (P rows of BK); int8
 * values: P[r][j] · vsc[j] · codes (vsc: the block's value scales).
 */
template <int R, int DC, typename E>
void accumulateFew(float* o, int d, int c, const float* alpha, const float* p, const E* vp, int64_t vs, int nb,
                   const float* vsc) {
  V::v acc[R][DC];
  for (int r = 0; r < R; r++) {
    const V::v al = V::set1(alpha[r]);
    for (int u = 0; u < DC; u++) acc[r][u] = V::mul(V::load(o + r * d + c + u * W), al);
  }
  for (int j = 0; j < nb; j++) {
    V::v vv[DC];
    for (int u = 0; u < DC; u++) vv[u] = loadKV(vp + j * vs + c + u * W);
    for (int r = 0; r < R; r++) {
      float pj = p[r * BK + j];
      if constexpr (std::is_same_v<E, int8_t>) pj *= vsc[j];
      const V::v pr = V::set1(pj);
      for (int u = 0; u < DC; u++) acc[r][u] = V::fma(pr, vv[u], acc[r][u]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int u = 0; u < DC; u++) V::store(o + r * d + c + u * W, acc[r][u]);
}

/**
 * Units of R ≤ DOT_ROWS rows (decode: one query's heads of a kv group): each key is scored against the
 * R rows as dot products (one K load for all rows), the softmax runs along the keys (P[r][j] rows), and
 * each V vector is loaded once for all R rows.
 */
template <int R, typename E>
void attendFew(const Attention& a, int g, int r0, int k0, int k1, const AttnPartial& out) {
  Scratch& s = scratch();
  const int d = a.d;
  const int dv = d / W;
  const int G = a.H / a.Hkv;
  float* qr = s.qr;  // [R][256] scaled q rows
  float* p = s.st;   // [R][BK] scores, then probabilities
  int lim[R];
  int kmax = k0;
  for (int r = 0; r < R; r++) {
    const int flat = r0 + r;
    const int i = flat / G;
    const float* qp = a.q + i * a.qStride + (g * G + flat % G) * d;
    const V::v sc = V::set1(a.scale);
    for (int c = 0; c < dv; c++) V::store(qr + r * 256 + c * W, V::mul(V::load(qp + c * W), sc));
    lim[r] = a.qpos0 >= 0 ? std::min(a.nk, a.qpos0 + i + 1) : a.nk;
    kmax = std::max(kmax, std::min(lim[r], k1));
    out.m[r] = -1e30f;
    out.l[r] = 0;
  }
  std::fill(out.o, out.o + static_cast<int64_t>(R) * d, 0.0f);
  const E* kb = reinterpret_cast<const E*>(a.k) + g * a.kvHeadStride;
  const E* vb = reinterpret_cast<const E*>(a.v) + g * a.kvHeadStride;
  // int8: the kv head's key and value scales by position (unused otherwise)
  const float* ksb = a.q8 ? a.ks + g * a.scaleHeadStride : nullptr;
  const float* vsb = a.q8 ? a.vs + g * a.scaleHeadStride : nullptr;
  constexpr int LINE = 64 / sizeof(E);  // elements per cache line (prefetches)
  float alpha[R];
  for (int j0 = k0; j0 < kmax; j0 += BK) {
    const int nb = std::min(BK, kmax - j0);
    int j = 0;
    // four keys at a time: their R·4 dot products summed horizontally together (sum4), not one by one
    for (; j + 4 <= nb; j += 4) {
      const E* kj = kb + static_cast<int64_t>(j0 + j) * a.kvPosStride;
      const E* vj = vb + static_cast<int64_t>(j0 + j) * a.kvPosStride;
      const bool kAhead = j0 + j + 4 + PF_KEYS <= kmax;
      for (int t = 0; t < 4; t++)
        for (int c = 0; c < d; c += LINE) {
          _mm_prefetch(reinterpret_cast<const char*>(vj + t * a.kvPosStride + c), _MM_HINT_T0);
          if (kAhead) _mm_prefetch(reinterpret_cast<const char*>(kj + (PF_KEYS + t) * a.kvPosStride + c), _MM_HINT_T0);
        }
      V::v acc[R][4];
      for (int r = 0; r < R; r++)
        for (int t = 0; t < 4; t++) acc[r][t] = V::zero();
      for (int c = 0; c < dv; c++) {
        V::v kv[4];
        for (int t = 0; t < 4; t++) kv[t] = loadKV(kj + t * a.kvPosStride + c * W);
        for (int r = 0; r < R; r++) {
          const V::v qv = V::load(qr + r * 256 + c * W);
          for (int t = 0; t < 4; t++) acc[r][t] = V::fma(qv, kv[t], acc[r][t]);
        }
      }
      for (int r = 0; r < R; r++) {
        __m128 sc = sum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
        if constexpr (std::is_same_v<E, int8_t>) sc = _mm_mul_ps(sc, _mm_loadu_ps(ksb + j0 + j));
        // keys at or past the row's limit get -inf
        const __m128i pos = _mm_add_epi32(_mm_set1_epi32(j0 + j), _mm_setr_epi32(0, 1, 2, 3));
        const __m128 ok = _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_set1_epi32(lim[r]), pos));
        sc = _mm_blendv_ps(_mm_set1_ps(-INFINITY), sc, ok);
        _mm_storeu_ps(p + r * BK + j, sc);
      }
    }
    for (; j < nb; j++) {
      const E* kj = kb + static_cast<int64_t>(j0 + j) * a.kvPosStride;
      // a decode batch's K/V rows come from memory (16 caches of ~26 MB): ask for key j + PF_KEYS and for
      // this block's value row j (read by the accumulation below) while the scores compute
      const E* vj = vb + static_cast<int64_t>(j0 + j) * a.kvPosStride;
      const bool kAhead = j0 + j + PF_KEYS < kmax;
      for (int c = 0; c < d; c += LINE) {
        _mm_prefetch(reinterpret_cast<const char*>(vj + c), _MM_HINT_T0);
        if (kAhead) _mm_prefetch(reinterpret_cast<const char*>(kj + PF_KEYS * a.kvPosStride + c), _MM_HINT_T0);
      }
      V::v acc[R];
      for (int r = 0; r < R; r++) acc[r] = V::zero();
      for (int c = 0; c < dv; c++) {
        const V::v kv = loadKV(kj + c * W);
        for (int r = 0; r < R; r++) acc[r] = V::fma(V::load(qr + r * 256 + c * W), kv, acc[r]);
      }
      float ksc = 1.0f;
      if constexpr (std::is_same_v<E, int8_t>) ksc = ksb[j0 + j];
      for (int r = 0; r < R; r++) p[r * BK + j] = j0 + j < lim[r] ? V::hsum(acc[r]) * ksc : -INFINITY;
    }
    for (int r = 0; r < R; r++) {
      float* pr = p + r * BK;
      V::v mv = V::set1(out.m[r]);
      int j = 0;
      for (; j + W <= nb; j += W) mv = V::max(mv, V::load(pr + j));
      float mx = V::hmax(mv);
      for (; j < nb; j++) mx = std::max(mx, pr[j]);
      const V::v mxv = V::set1(mx);
      V::v sum = V::zero();
      for (j = 0; j + W <= nb; j += W) {
        const V::v e = vexp(V::sub(V::load(pr + j), mxv));
        V::store(pr + j, e);
        sum = V::add(sum, e);
      }
      if (j < nb) {
        const V::v e = vexp(V::sub(V::loadn(pr + j, nb - j), mxv));
        V::storen(pr + j, e, nb - j);
        sum = V::add(sum, V::loadn(pr + j, nb - j));
      }
      alpha[r] = std::exp(out.m[r] - mx);
      out.l[r] = out.l[r] * alpha[r] + V::hsum(sum);
      out.m[r] = mx;
    }
    const E* vp = vb + static_cast<int64_t>(j0) * a.kvPosStride;
    const float* vsc = vsb ? vsb + j0 : nullptr;
    constexpr int DC = W == 16 ? 4 : 2;
    int c = 0;
    for (; c + DC <= dv; c += DC) accumulateFew<R, DC>(out.o, d, c * W, alpha, p, vp, a.kvPosStride, nb, vsc);
    for (; c < dv; c++) accumulateFew<R, 1>(out.o, d, c * W, alpha, p, vp, a.kvPosStride, nb, vsc);
  }
}
}  // namespace

int attnRowsMax() { return RMAX; }

void attendUnit(const Attention& a, int g, int r0, int R, int k0, int k1, const AttnPartial& out) {
  if (a.q8) switch (R) {
      case 1: return attendFew<1, int8_t>(a, g, r0, k0, k1, out);
      case 2: return attendFew<2, int8_t>(a, g, r0, k0, k1, out);
      case 3: return attendFew<3, int8_t>(a, g, r0, k0, k1, out);
      case 4: return attendFew<4, int8_t>(a, g, r0, k0, k1, out);
      default: break;
    }
  else if (a.half) switch (R) {
      case 1: return attendFew<1, uint16_t>(a, g, r0, k0, k1, out);
      case 2: return attendFew<2, uint16_t>(a, g, r0, k0, k1, out);
      case 3: return attendFew<3, uint16_t>(a, g, r0, k0, k1, out);
      case 4: return attendFew<4, uint16_t>(a, g, r0, k0, k1, out);
      default: break;
    }
  else switch (R) {
      case 1: return attendFew<1, float>(a, g, r0, k0, k1, out);
      case 2: return attendFew<2, float>(a, g, r0, k0, k1, out);
      case 3: return attendFew<3, float>(a, g, r0, k0, k1, out);
      case 4: return attendFew<4, float>(a, g, r0, k0, k1, out);
      default: break;
    }
  switch ((R + W - 1) / W) {
    case 1: return attendRows<1>(a, g, r0, R, k0, k1, out);
    case 2: return attendRows<2>(a, g, r0, R, k0, k1, out);
    case 3: return attendRows<3>(a, g, r0, R, k0, k1, out);
    default: return attendRows<4>(a, g, r0, R, k0, k1, out);
  }
}

}  // namespace KV_NS
}  // namespace kv
