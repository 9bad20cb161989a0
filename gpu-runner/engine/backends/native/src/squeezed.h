// Squeezed attention's fused decode step (squeezed.cc, squeezed-driver.cc): per 16-slot block of a fixed
// context an upper bound of q·k from its keys' channel ranges (int8 centre + half-width), the budget's best
// blocks, exact attention over their rows + always-attended ranges + live tokens, and the left-out slots'
// share (per group: slots left out × exp(q·mean key), the group's mean value) merged by log-sum-exp — one
// call per (row, kv head). The reference it must equal is gpu-runner/engine/attention/squeezed/key-sketch.ts.
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
  int64_t n;  // fixed-context slots; blocks of SQ_BLOCK slots [16b, 16b + 16), ⌈n/16⌉ of them
  int64_t groups;
  const int32_t* gStart;  // [groups] first slot of each group (groups are runs of slots, ascending)
  const int32_t* gLen;    // [groups] its slots
  const float* gvals;     // [groups][d] group mean values, null = drop-only
  // int8 tables in blocks of 16 rows ([rows/16][d/4][16][4], rows padded to 16) with each row's Σ and scale:
  // the groups' mean keys (rows = groups) and the blocks' channel centres and half-widths (rows = blocks)
  const int8_t* gm8;
  const int32_t* gmsum;
  const float* gms;
  const int8_t* bm8;
  const int32_t* bmsum;
  const float* bms;
  const int8_t* bh8;
  const int32_t* bhsum;
  const float* bhs;
  const int32_t* bCount;  // [⌈n/16⌉] selectable slots of each block
  const int32_t* bFirst;  // [⌈n/16⌉] first group overlapping each block (groups: none)
  const void* K;  // this layer and kv head: [pos][d], f32 or (half) IEEE halves
  const void* V;
  bool half;
  const int32_t* always;  // [start, end) pairs, sorted
  int64_t alwaysPairs;
  int64_t end;   // live tokens [n, end)
  int64_t take;  // budget: keys to keep; < 0 → threshold
  double tau;    // threshold: keep a block when selectable · exp(rank) ≥ tau
};

/** Slots per block (the choice's unit) and rows per block of the interleaved int8 tables. */
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
 * (rows of d, f32 or IEEE halves): o [R][d] unnormalised with the running max m and sum l, as the dense
 * unit leaves them (squeezed-attend.cc, per AVX level). false: a shape it does not take (R > 4).
 */
#define KV_DECLARE_SQ_ATTEND(ns)                                                                         \
  namespace ns {                                                                                         \
  KV_EXPORT bool attendBlocks(const float* q, float scale, const void* K, const void* V, bool half, int R, \
                              int d, const int32_t* blocks, int64_t nb, float* o, float* m, float* l);     \
  }
KV_DECLARE_SQ_ATTEND(avx2)
KV_DECLARE_SQ_ATTEND(avx512)

napi_value squeezedStepFn(napi_env env, napi_callback_info info);

}  // namespace kv
