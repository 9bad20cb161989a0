// kvUnpack's rows (kvunpack.h), compiled once per ISA level (simd.h: 16-lane AVX-512 or 8-lane AVX2 +
// F16C): each row is decoded into a buffer on the stack (L1), transformed there (inverse Hadamard, RoPE
// re-rotation) and handed to writeRow. Whole vectors where the row's shape allows, scalar code for the
// rest (tails; int4 rows whose halves are not whole vectors; Hadamard rows shorter than a vector).
#include <cstring>
#include "kvunpack.h"
// GCC 12 at -O3 flags the intrinsics headers' own _mm512_undefined_* operands: not this file's
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "simd.h"

namespace kv {
namespace KV_NS {
namespace {

constexpr int W = V::W;

inline float halfToFloat(uint16_t h) { return _cvtsh_ss(h); }

#if KV_LEVEL == 512
/** W unsigned / signed bytes at p → f32 lanes */
inline V::v u8x(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline V::v s8x(const uint8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
/** W bytes at p → their low (shift 0) or high (shift 4) nibbles as f32 lanes, minus `bias` */
inline V::v nibbles(const uint8_t* p, int shift, int bias) {
  __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  x = _mm512_and_si512(_mm512_srli_epi32(x, shift), _mm512_set1_epi32(15));
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(x, _mm512_set1_epi32(bias)));
}
/** lane j ← lane j ^ h (h < W, a power of two): immediate shuffles, in 128-bit lanes where they suffice */
inline V::v swapLanes(V::v v, int h) {
  switch (h) {
    case 1: return _mm512_permute_ps(v, 0xB1);
    case 2: return _mm512_permute_ps(v, 0x4E);
    case 4: return _mm512_shuffle_f32x4(v, v, 0xB1);
    default: return _mm512_shuffle_f32x4(v, v, 0x4E);
  }
}
/** −1 in lanes with bit h set, +1 elsewhere */
inline V::v butterflySign(int h) {
  const __m512i bit = _mm512_and_si512(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(h));
  return _mm512_mask_blend_ps(_mm512_test_epi32_mask(bit, bit), V::set1(1.0f), V::set1(-1.0f));
}
#else
inline V::v u8x(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline V::v s8x(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline V::v nibbles(const uint8_t* p, int shift, int bias) {
  __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  x = _mm256_and_si256(_mm256_srli_epi32(x, shift), _mm256_set1_epi32(15));
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(x, _mm256_set1_epi32(bias)));
}
inline V::v swapLanes(V::v v, int h) {
  switch (h) {
    case 1: return _mm256_permute_ps(v, 0xB1);
    case 2: return _mm256_permute_ps(v, 0x4E);
    default: return _mm256_permute2f128_ps(v, v, 1);
  }
}
inline V::v butterflySign(int h) {
  const __m256i bit = _mm256_and_si256(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(h));
  const __m256 set = _mm256_castsi256_ps(_mm256_cmpeq_epi32(bit, _mm256_set1_epi32(h)));
  return _mm256_blendv_ps(V::set1(1.0f), V::set1(-1.0f), set);
}
#endif

/** f16 [count] → f32 */
void widen(const uint16_t* p, float* out, int count) {
  int c = 0;
  for (; c + W <= count; c += W) V::store(out + c, V::half(p + c));
  for (; c < count; c++) out[c] = halfToFloat(p[c]);
}

/** Unsigned code of channel c: int8 byte c; int4 the low nibble of byte c (c < d/2), else the high of c − d/2. */
inline int codeAt(const uint8_t* codes, int c, int d, bool int8) {
  if (int8) return codes[c];
  const int half = d >> 1;
  return c < half ? codes[c] & 15 : codes[c - half] >> 4;
}

/** out[c] = mins[c] + steps[c]·q[c] (keys: unsigned codes) */
void dequantKeys(const uint8_t* codes, const float* steps, const float* mins, float* out, int d, bool int8) {
  int c = 0;
  if (int8) {
    for (; c + W <= d; c += W) V::store(out + c, V::fma(V::load(steps + c), u8x(codes + c), V::load(mins + c)));
  } else if ((d >> 1) % W == 0) {
    const int half = d >> 1;
    for (int j = 0; j < half; j += W) {
      V::store(out + j, V::fma(V::load(steps + j), nibbles(codes + j, 0, 0), V::load(mins + j)));
      const int h = half + j;
      V::store(out + h, V::fma(V::load(steps + h), nibbles(codes + j, 4, 0), V::load(mins + h)));
    }
    c = d;
  }
  for (; c < d; c++) out[c] = mins[c] + steps[c] * static_cast<float>(codeAt(codes, c, d, int8));
}

/** out[c] = steps[c]·q[c] (values: signed codes; int4 offset by 8) */
void dequantValues(const uint8_t* codes, const float* steps, float* out, int d, bool int8) {
  int c = 0;
  if (int8) {
    for (; c + W <= d; c += W) V::store(out + c, V::mul(V::load(steps + c), s8x(codes + c)));
  } else if ((d >> 1) % W == 0) {
    const int half = d >> 1;
    for (int j = 0; j < half; j += W) {
      V::store(out + j, V::mul(V::load(steps + j), nibbles(codes + j, 0, 8)));
      V::store(out + half + j, V::mul(V::load(steps + half + j), nibbles(codes + j, 4, 8)));
    }
    c = d;
  }
  for (; c < d; c++) {
    const int u = codeAt(codes, c, d, int8);
    const int q = int8 ? static_cast<int8_t>(u) : u - 8;
    out[c] = steps[c] * static_cast<float>(q);
  }
}

/**
 * In place: row ← (H/√d)·row, H the Sylvester Hadamard matrix (kv-codec.ts hadamardRows; d a power of
 * two). The butterfly stages commute: strides below W inside each vector (lane swap + sign), then the
 * strides of whole vectors pairwise; rows shorter than a vector in scalar code.
 */
void hadamardRow(float* row, int d) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  if (d < W) {
    for (int c = 0; c < d; c++) row[c] *= scale;
    for (int h = 1; h < d; h <<= 1)
      for (int i = 0; i < d; i += h << 1)
        for (int j = i; j < i + h; j++) {
          const float a = row[j], b = row[j + h];
          row[j] = a + b;
          row[j + h] = a - b;
        }
    return;
  }
  const V::v s = V::set1(scale);
  for (int c = 0; c < d; c += W) {
    V::v v = V::mul(V::load(row + c), s);
    for (int h = 1; h < W; h <<= 1) v = V::fma(v, butterflySign(h), swapLanes(v, h));
    V::store(row + c, v);
  }
  for (int h = W; h < d; h <<= 1)
    for (int i = 0; i < d; i += h << 1)
      for (int j = i; j < i + h; j += W) {
        const V::v a = V::load(row + j), b = V::load(row + j + h);
        V::store(row + j, V::add(a, b));
        V::store(row + j + h, V::sub(a, b));
      }
}

/** In place: (x_i, x_{i+half}) → (x·cos − y·sin, y·cos + x·sin), cos/sin tables [half] each at cs. */
void rotateRow(float* row, const float* cs, int half) {
  float* hi = row + half;
  const float* sn = cs + half;
  int i = 0;
  for (; i + W <= half; i += W) {
    const V::v u = V::load(row + i), v = V::load(hi + i), c = V::load(cs + i), s = V::load(sn + i);
    V::store(row + i, V::sub(V::mul(u, c), V::mul(v, s)));
    V::store(hi + i, V::add(V::mul(v, c), V::mul(u, s)));
  }
  for (; i < half; i++) {
    const float u = row[i], v = hi[i];
    row[i] = u * cs[i] - v * sn[i];
    hi[i] = v * cs[i] + u * sn[i];
  }
}

#if KV_LEVEL == 512
inline void stream(float* p, V::v a) { _mm512_stream_ps(p, a); }
/** W floats → W IEEE halves (nearest even) at p: streamed when aligned, else stored */
inline void halves(uint16_t* p, V::v a) {
  const __m256i h = _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  if (reinterpret_cast<uintptr_t>(p) % 32 == 0) _mm256_stream_si256(reinterpret_cast<__m256i*>(p), h);
  else _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
}
#else
inline void stream(float* p, V::v a) { _mm256_stream_ps(p, a); }
inline void halves(uint16_t* p, V::v a) {
  const __m128i h = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  if (reinterpret_cast<uintptr_t>(p) % 16 == 0) _mm_stream_si128(reinterpret_cast<__m128i*>(p), h);
  else _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
}
#endif
inline uint16_t toHalf(float x) { return _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

/**
 * The row writer: a decoded row of d floats into the cache row `off` elements past the cache start, f32
 * (dst), f16 (dstHalf) or int8 (dstQ8, its scale `si` floats past dstScale). Whole vectors at vector-aligned addresses are streamed (non-temporal: the
 * cache rows are not read into the CPU cache before they are overwritten, halving the memory traffic of a
 * write-only pass; the caller fences before the rows are read); the rest is stored plainly.
 */
inline void writeRow(const KvUnpack& a, int64_t off, int64_t si, const float* row, int d) {
  int c = 0;
  if (a.dstQ8) {
    quantizeRow(row, a.dstQ8 + off, a.dstScale + si, d);
    return;
  }
  if (a.dstHalf) {
    uint16_t* dst = a.dstHalf + off;
    for (; c + W <= d; c += W) halves(dst + c, V::load(row + c));
    for (; c < d; c++) dst[c] = toHalf(row[c]);
    return;
  }
  float* dst = a.dst + off;
  for (; c < d && (reinterpret_cast<uintptr_t>(dst + c) % (W * 4)) != 0; c++) dst[c] = row[c];
  for (; c + W <= d; c += W) stream(dst + c, V::load(row + c));
  for (; c < d; c++) dst[c] = row[c];
}

/**
 * Row r's kv head, token and key group, advanced row by row (no division per row): rows of a kv head
 * are consecutive tokens; `fresh` says the key group changed (its steps and minima must be widened).
 */
struct Cursor {
  int64_t n, kg, h, t, gi, gt;
  bool fresh = true;
  Cursor(int64_t r0, int64_t n_, int64_t kg_) : n(n_), kg(kg_) {
    h = r0 / n, t = r0 - h * n;
    gi = t / kg, gt = t - gi * kg;
  }
  void next() {
    fresh = false;
    if (++t == n) t = 0, h++, gi = 0, gt = 0, fresh = true;
    else if (++gt == kg) gt = 0, gi++, fresh = true;
  }
};

/** The row writer, for a row held in NV registers (d = NV · W). */
template <int NV>
inline void writeRowV(const KvUnpack& a, int64_t off, int64_t si, const V::v* x) {
  if (a.dstQ8) {
    alignas(64) float row[NV * W];
    for (int i = 0; i < NV; i++) V::store(row + i * W, x[i]);
    quantizeRow(row, a.dstQ8 + off, a.dstScale + si, NV * W);
    return;
  }
  if (a.dstHalf) {
    for (int i = 0; i < NV; i++) halves(a.dstHalf + off + i * W, x[i]);
    return;
  }
  float* dst = a.dst + off;
  if (reinterpret_cast<uintptr_t>(dst) % (W * 4) == 0)
    for (int i = 0; i < NV; i++) stream(dst + i * W, x[i]);
  else
    for (int i = 0; i < NV; i++) V::store(dst + i * W, x[i]);
}

/** Whether rowsInRegisters<NV> takes this section: d = NV · W, halves of whole vectors where they matter. */
bool fitsRegisters(const KvUnpack& a, int nv) {
  if (a.d != nv * W) return false;
  const bool quantized = a.dtype == KV_INT8 || a.dtype == KV_INT4;
  if ((a.dtype == KV_INT4 || a.cs) && nv % 2) return false;
  if (quantized && !a.isKey && a.vg % W) return false;
  return true;
}

/**
 * kvUnpackRows for rows of NV vectors (fitsRegisters): every stage on registers — decode, the
 * Hadamard butterflies, the rotation — and the row written once. Same arithmetic as the buffered path.
 */
template <int NV>
void rowsInRegisters(const KvUnpack& a, int64_t r0, int64_t r1) {
  constexpr int d = NV * W, H = NV / 2;
  const int64_t n = a.n;
  const bool int8 = a.dtype == KV_INT8;
  V::v c[H > 0 ? H : 1] = {}, sn[H > 0 ? H : 1] = {};
  if (a.cs)
    for (int i = 0; i < H; i++) c[i] = V::load(a.cs + i * W), sn[i] = V::load(a.cs + d / 2 + i * W);
  V::v gs[NV] = {}, gm[NV] = {};
  const int64_t groups = a.isKey ? (n + a.kg - 1) / a.kg : 0;
  const V::v scale = V::set1(1.0f / std::sqrt(static_cast<float>(d)));
  int vgroup[NV];  // values: the step of vector i (groups are whole vectors)
  for (int i = 0; i < NV; i++) vgroup[i] = i * W / a.vg;
  const int64_t perRow = d / a.vg;
  for (Cursor at(r0, n, a.kg); at.h * n + at.t < r1; at.next()) {
    const int64_t r = at.h * n + at.t;
    V::v x[NV] = {};
    if (a.dtype == KV_F32) {
      const float* p = reinterpret_cast<const float*>(a.src) + r * d;
      for (int i = 0; i < NV; i++) x[i] = V::load(p + i * W);
    } else if (a.dtype == KV_F16) {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(a.src) + r * d;
      for (int i = 0; i < NV; i++) x[i] = V::half(p + i * W);
    } else {
      const uint8_t* codes = a.src + r * a.rowBytes;
      V::v q[NV] = {};
      if (int8) {
        for (int i = 0; i < NV; i++) q[i] = a.isKey ? u8x(codes + i * W) : s8x(codes + i * W);
      } else {
        const int bias = a.isKey ? 0 : 8;
        for (int i = 0; i < H; i++) q[i] = nibbles(codes + i * W, 0, bias), q[H + i] = nibbles(codes + i * W, 4, bias);
      }
      if (a.isKey) {
        if (at.fresh) {
          // Hadamard-stored keys: the 1/√d of H/√d folded into the group's steps and minima
          const int64_t g = at.h * groups + at.gi;
          for (int i = 0; i < NV; i++) gs[i] = V::half(a.steps + g * d + i * W), gm[i] = V::half(a.mins + g * d + i * W);
          if (a.hadamard)
            for (int i = 0; i < NV; i++) gs[i] = V::mul(gs[i], scale), gm[i] = V::mul(gm[i], scale);
        }
        for (int i = 0; i < NV; i++) x[i] = V::fma(gs[i], q[i], gm[i]);
        if (a.hadamard) {
          for (int i = 0; i < NV; i++) {
            V::v v = x[i];
            for (int s = 1; s < W; s <<= 1) v = V::fma(v, butterflySign(s), swapLanes(v, s));
            x[i] = v;
          }
          for (int s = 1; s < NV; s <<= 1)
            for (int i = 0; i < NV; i += s << 1)
              for (int j = i; j < i + s; j++) {
                const V::v u = x[j], w = x[j + s];
                x[j] = V::add(u, w);
                x[j + s] = V::sub(u, w);
              }
        }
      } else {
        const uint16_t* st = a.steps + r * perRow;
        for (int i = 0; i < NV; i++) x[i] = V::mul(V::set1(halfToFloat(st[vgroup[i]])), q[i]);
      }
    }
    if (a.cs)
      for (int i = 0; i < H; i++) {
        const V::v u = x[i], v = x[H + i];
        x[i] = V::sub(V::mul(u, c[i]), V::mul(v, sn[i]));
        x[H + i] = V::add(V::mul(v, c[i]), V::mul(u, sn[i]));
      }
    writeRowV<NV>(a, at.h * a.headStride + at.t * d, at.h * a.scaleHeadStride + at.t, x);
  }
  _mm_sfence();  // the streamed rows are visible before the pool reports this part done
}

}  // namespace

void kvUnpackRows(const KvUnpack& a, int64_t r0, int64_t r1) {
  if (fitsRegisters(a, 1)) return rowsInRegisters<1>(a, r0, r1);
  if (fitsRegisters(a, 2)) return rowsInRegisters<2>(a, r0, r1);
  if (fitsRegisters(a, 4)) return rowsInRegisters<4>(a, r0, r1);
  if (W == 16 && fitsRegisters(a, 8)) return rowsInRegisters<8>(a, r0, r1);  // AVX2: 8 rows spill
  const int d = a.d;
  const int64_t n = a.n;
  const bool quantized = a.dtype == KV_INT8 || a.dtype == KV_INT4;
  const bool int8 = a.dtype == KV_INT8;
  alignas(64) float row[KV_UNPACK_MAX_D];
  alignas(64) float gSteps[KV_UNPACK_MAX_D];  // keys: the current token group's steps and minima
  alignas(64) float gMins[KV_UNPACK_MAX_D];
  const int64_t groups = a.isKey && quantized ? (n + a.kg - 1) / a.kg : 0;
  for (Cursor at(r0, n, a.kg); at.h * n + at.t < r1; at.next()) {
    const int64_t r = at.h * n + at.t;
    if (a.dtype == KV_F32) {
      std::memcpy(row, a.src + r * d * 4, static_cast<size_t>(d) * 4);
    } else if (a.dtype == KV_F16) {
      widen(reinterpret_cast<const uint16_t*>(a.src) + r * d, row, d);
    } else if (a.isKey) {
      // a key group's steps and minima serve its kg rows: widened once, when the rows reach it
      if (at.fresh) {
        const int64_t g = at.h * groups + at.gi;
        widen(a.steps + g * d, gSteps, d);
        widen(a.mins + g * d, gMins, d);
      }
      dequantKeys(a.src + r * a.rowBytes, gSteps, gMins, row, d, int8);
      if (a.hadamard) hadamardRow(row, d);
    } else {
      // the row's step per channel (one f16 per vg channels)
      alignas(64) float vSteps[KV_UNPACK_MAX_D];
      const int per = d / a.vg;
      const uint16_t* st = a.steps + r * per;
      for (int g = 0; g < per; g++) {
        const float s = halfToFloat(st[g]);
        int c = g * a.vg;
        for (; c + W <= (g + 1) * a.vg; c += W) V::store(vSteps + c, V::set1(s));
        for (; c < (g + 1) * a.vg; c++) vSteps[c] = s;
      }
      dequantValues(a.src + r * a.rowBytes, vSteps, row, d, int8);
    }
    if (a.cs) rotateRow(row, a.cs, d >> 1);
    writeRow(a, at.h * a.headStride + at.t * d, at.h * a.scaleHeadStride + at.t, row, d);
  }
  _mm_sfence();  // the streamed rows are visible before the pool reports this part done
}

}  // namespace KV_NS
}  // namespace kv
