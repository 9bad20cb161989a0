// Squeezed attention's fused decode step (squeezed.cc, squeezed-driver.cc): per-key int8 scoring of a
// fixed context, top-budget selection of 16-slot blocks by their best key, exact attention over the kept
// keys + always-attended ranges + live tokens, and the left-out keys' share (clustered attention: each
// group's slots not kept at the group's mean key and mean value) merged by log-sum-exp — one kernel run
// per (row, kv head) instead of five host passes, a span's runs of one layer in one call over the pool.
// The reference it must equal is gpu-runner/engine/attention/squeezed/key-sketch.ts.
#pragma once
#define NAPI_VERSION 8
#include <node_api.h>
#include <cstdint>
#include "kernels.h"

namespace kv {

struct SqueezedStep {
  const float* q;  // [G][d] the kv head's query group, one row
  float* out;      // [G][d]
  int G, d;
  double scale;
  // int8 keys + 128 (u8) in cache order, quad-major: [d/4][npad][4] (n padded to 16), the channels in the
  // order perm: position p holds channel perm[p]; a step scores the `quads` quads of largest
  // Σ_h Σ_{p∈quad} |q8_h,perm[p]|·cw[p] (SparQ's channel subset, key-sketch.ts pickQuads)
  const uint8_t* k8;
  const int32_t* perm;  // [d]
  const float* cw;      // [d] channel weight (mean |k8|) of each position
  int quads;            // quads scored (≥ d/4: every channel)
  const float* ks;      // [n] the keys' scales
  // [groups] mean keys in k8's layout ([d/4][groups padded to 16][4], + 128) and their scales: the left-out
  // share's logit of each group (q · mean key over every channel); needed with gvals
  const uint8_t* gq;
  const float* gqs;
  const int32_t* grp;  // [n] summary group, −1 = always attended
  int64_t n;
  const uint16_t* gvals;  // [groups][d] group mean values (IEEE halves), null = drop-only
  int64_t groups;
  const void* K;  // this layer and kv head: [pos][d], f32, (half) IEEE halves or (q8) int8 codes
  const void* V;
  bool half;
  bool q8;
  const float* Ks;  // q8: [pos] the K rows' scales (value = scale · code), else null
  const float* Vs;  // q8: [pos] the V rows' scales
  const int32_t* always;  // [start, end) pairs, sorted
  int64_t alwaysPairs;
  int64_t end;   // live tokens [n, end)
  int64_t take;  // budget: keys to keep; < 0 → threshold
  double tau;    // threshold: keep when selectable · weight ≥ tau
  // the prefilter (budget mode, 0 ≤ want < selectable keys): groups ranked by a bound, per-key scoring only
  // inside the best until `want` keys; the others join the left-out share as size · exp(q·mean key)
  const int32_t* gStart;  // [groups] first slot of each group (groups are runs of slots, in slot order)
  const int32_t* gLen;    // [groups] its slots
  // [groups] mean key and max |k − mean| per dim of each group, int8 in the keys' block layout (groups
  // padded to 16) with their Σ and scales, as k8 / ksum / ks
  const int8_t* gm8;
  const int32_t* gmsum;
  const float* gms;
  const int8_t* gs8;
  const int32_t* gssum;
  const float* gss;
  int64_t want;  // keys scored per key (≥ take); −1 = every key
};

/** Keys per block of the interleaved int8 layout. */
constexpr int SQ_BLOCK = 16;

/** One step; returns the keys kept (not counting always-attended ranges). AVX2, or AVX-512 VNNI. */
namespace avx2 {
KV_EXPORT int64_t squeezedStep(const SqueezedStep& a);
}  // namespace avx2
namespace vnni {
KV_EXPORT int64_t squeezedStep(const SqueezedStep& a);
}  // namespace vnni

/**
 * Exact attention of R ≤ 4 query rows (q [R][d], scaled by scale) over the 16-row blocks `blocks` of K / V
 * (rows of d: f32, IEEE halves, or int8 codes with a scale per row in ks / vs — null for the others):
 * o [R][d] unnormalised with the running max m and sum l, as the dense unit leaves them
 * (squeezed-attend.cc, per AVX level). false: a shape it does not take (R > 4).
 */
#define KV_DECLARE_SQ_ATTEND(ns)                                                                         \
  namespace ns {                                                                                         \
  KV_EXPORT bool attendBlocks(const float* q, float scale, const void* K, const void* V, bool half,       \
                              const float* ks, const float* vs, int R, int d, const int32_t* blocks,        \
                              int64_t nb, float* o, float* m, float* l);                                    \
  }
KV_DECLARE_SQ_ATTEND(avx2)
KV_DECLARE_SQ_ATTEND(avx512)

napi_value squeezedStepsFn(napi_env env, napi_callback_info info);

}  // namespace kv
