// Kernel entry points shared by the binding (addon.cc) and the per-ISA translation units. Every kernel
// works on caller-owned memory (pointers resolved from offsets into the JS side's buffer) and computes
// the part of the output it is given ([n0, n1) columns, or unit ranges), so the pool can split it.
#pragma once
#include <cstdint>
#include <cstddef>

#define KV_EXPORT __attribute__((visibility("default")))

namespace kv {

enum WeightType : int32_t { W_F32 = 0, W_F16 = 1, W_Q8_0 = 2, W_Q4_0 = 3 };

// y[M][N] = x[M][K] · w[N][K]ᵀ (+ bias[N]); w f32 or f16 (halves × halfScale = value).
struct MatmulF {
  const float* x;
  const void* w;
  const float* bias;  // nullptr = none
  float* y;
  int64_t M, N, K;
  bool f16;
  float halfScale;
};

// Activations quantized to Q8_0 blocks: xq [M][K] int8 (per 32-block scale xd [M][K/32]); xc [M][K/32] =
// −offset · xd · Σ xq over the block, the correction for weights stored with +offset (see pack.cc).
struct QuantX {
  int8_t* xq;
  float* xd;
  float* xc;
};

// y = x · wᵀ with w packed by packWeights (Q8_0 / Q4_0, groups of 16 rows, see pack.cc).
struct MatmulQ {
  QuantX qx;
  const uint8_t* w;
  const float* bias;
  float* y;
  int64_t M, N, K;
  int32_t type;  // W_Q8_0 or W_Q4_0
};

// Attention rows of one work unit: up to RMAX (query, head) rows sharing kv head g.
// q, out: [nq][H][d] (row stride qStride floats); k, v: [kv_head][pos][d] via the strides (in elements),
// f32, or IEEE halves when `half` (an f16 KV cache: k and v then point at uint16_t).
struct Attention {
  const float* q;
  const float* k;
  const float* v;
  bool half;
  float* out;
  float* lse;  // [nq][H], nullptr = none
  int32_t nq, H, Hkv, d;
  float scale;
  int64_t qStride, kvHeadStride, kvPosStride;
  int32_t qpos0;  // query i sits at qpos0 + i; < 0 = no causal mask
  int32_t nk;
  // an int8 KV cache (q8): k and v point at int8 rows (strides in elements = bytes), ks / vs at their f32
  // scales [kv_head][pos] (scaleHeadStride floats between heads, one per position): value = scale · q
  bool q8;
  const float* ks;
  const float* vs;
  int64_t scaleHeadStride;
};

// Partial result of one unit over a key range: o [R][d] unnormalised, m/l [R] running max and sum.
struct AttnPartial {
  float* o;
  float* m;
  float* l;
};

// Per-ISA entry points: f32.cc, attention.cc and elementwise.cc are compiled for avx2 and avx512, quant.cc for avx2 and
// vnni (AVX-512 VNNI); the AVX-512 level without VNNI uses the avx2 int8 code. KV_NS names the namespace.
#define KV_DECLARE_F(ns)                                                                          \
  namespace ns {                                                                                  \
  /* columns [n0, n1) of y (n0 a multiple of 16) */                                               \
  KV_EXPORT void matmulF(const MatmulF&, int64_t n0, int64_t n1);                                           \
  /* rows per attention unit: 4 vectors of the level's width */                                   \
  KV_EXPORT int attnRowsMax();                                                                              \
  /* unit rows r0..r0+R of kv head g (row r = query r / G, head g·G + r % G), keys [k0, k1) */    \
  KV_EXPORT void attendUnit(const Attention&, int g, int r0, int R, int k0, int k1, const AttnPartial&);   \
  /* f32 flops of `iters` steps of independent FMA chains (a peak-throughput probe) */            \
  KV_EXPORT double peakFma(int64_t iters);                                                                  \
  /* y[i] = gate[i] · sigmoid(gate[i]) · up[i] for i in [i0, i1) */                              \
  KV_EXPORT void swiglu(const float* gate, const float* up, float* y, int64_t i0, int64_t i1);              \
  /* out[m] = first index of the largest of row m of x [*][N] (NaN never wins), rows [m0, m1) */       \
  KV_EXPORT void argmax(const float* x, int64_t N, int32_t* out, int64_t m0, int64_t m1);                   \
  /* rows [m0, m1) of y [*][D] = x / sqrt(mean(x²) + eps) · w */                                   \
  KV_EXPORT void rmsnorm(const float* x, const float* w, float* y, int64_t D, float eps, int64_t m0, int64_t m1); \
  /* rows [m0, m1) of rotate-half RoPE of x [*][width] into y; cs [*][headDim]: row m's cos [headDim/2], \
     then sin [headDim/2] */                                                                       \
  KV_EXPORT void rope(const float* x, float* y, const float* cs, int64_t width, int64_t headDim, int64_t m0, \
                      int64_t m1);                                                                 \
  /* y[i] = a[i] + b[i] for i in [i0, i1) */                                                        \
  KV_EXPORT void add(const float* a, const float* b, float* y, int64_t i0, int64_t i1);            \
  }

// f32 ↔ IEEE half rows (an f16 KV cache's writes and reads; kv-half.cc, F16C): n values each.
KV_EXPORT void toHalf(const float* src, uint16_t* dst, int64_t n);
KV_EXPORT void fromHalf(const uint16_t* src, float* dst, int64_t n);
// f32 row ↔ an int8 KV cache row (kv-half.cc): symmetric per-row quantization, scale = max|x| / 127,
// q = round-to-nearest-even(x · 127 / max|x|) (a zero row: scale 0, q 0); value = scale · q. n values.
KV_EXPORT void quantizeRow(const float* x, int8_t* q, float* scale, int64_t n);
KV_EXPORT void dequantizeRow(const int8_t* q, float scale, float* x, int64_t n);
#define KV_DECLARE_Q(ns)                                                                          \
  namespace ns {                                                                                  \
  /* the weight offset `type`'s kernel corrects for (packed u8 = q + offset; see pack.cc) */      \
  KV_EXPORT float weightOffset(int32_t type);                                                               \
  /* rows [m0, m1) of x [M][K] → QuantX with xc = −offset · xd · Σ xq */                            \
  KV_EXPORT void quantizeX(const float* x, int64_t K, const QuantX&, int64_t m0, int64_t m1, float offset); \
  /* columns [n0, n1) of y, n0 a multiple of 16 */                                                \
  KV_EXPORT void matmulQ(const MatmulQ&, int64_t n0, int64_t n1);                                           \
  /* int8 ops (2 per multiply-add) of `iters` steps of independent dot-product chains */         \
  KV_EXPORT double peakDot(int64_t iters);                                                                  \
  }
KV_DECLARE_F(avx2)
KV_DECLARE_F(avx512)
KV_DECLARE_Q(avx2)
KV_DECLARE_Q(vnni)

}  // namespace kv
