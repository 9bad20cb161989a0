// kvUnpack: one chunk KV artifact section (gpu-runner/engine/kv/kv-codec.ts has the byte layouts and the
// reference decoder; wasm/kernels/kvpack.as the wasm kernel held to the same tests) → KV cache rows, in
// one pass per row while it is in L1: f32 copied, f16 widened (F16C), int8/int4 dequantized (keys
// min + step·q per channel and token group, values step·q per token and channel group), keys stored
// Hadamard-rotated multiplied by H/√d again (butterflies in registers), keys moved to a new position
// re-rotated by Δ (each rotate-half pair). The decoded row is handed to a row writer (writeRow /
// writeRowV in kvunpack.cc), the only part that knows the cache's element type (f32, f16 halves, or int8
// rows with a scale each, quantized by quantizeRow as every other writer of an int8 cache).
#pragma once
#include <cstdint>
#include "kernels.h"

namespace kv {

enum KvDtype : int32_t { KV_F32 = 0, KV_F16 = 1, KV_INT8 = 2, KV_INT4 = 3 };

/** Largest head dim the kernel takes (its row buffers live on the stack). */
constexpr int KV_UNPACK_MAX_D = 1024;

struct KvUnpack {
  const uint8_t* src;    // the section: codes (or values) [kv_head][n][row]
  const uint16_t* steps;  // f16: keys [kv_head][ceil(n/kg)][d], values [kv_head][n][d/vg]; null for f32/f16
  const uint16_t* mins;   // f16 keys only: [kv_head][ceil(n/kg)][d]
  float* dst;             // the cache at kv head 0, first position (f32 cache)
  uint16_t* dstHalf;      // or: an f16 cache (IEEE halves, rounded to nearest even); dst is then null
  int8_t* dstQ8;          // or: an int8 cache's codes (headStride in bytes) and
  float* dstScale;        //   its scales, [kv_head][pos] with scaleHeadStride floats between heads
  int64_t scaleHeadStride;
  int32_t dtype;          // KvDtype
  bool isKey;
  bool hadamard;          // keys stored multiplied by H/√d (int8/int4)
  int32_t kvHeads, n, d, kg, vg;
  int64_t rowBytes;       // bytes per code row (quantized)
  int64_t headStride;     // dst floats between kv heads
  const float* cs;        // null = no rotation; else cos [d/2] then sin [d/2]
};

#define KV_DECLARE_UNPACK(ns)                                                          \
  namespace ns {                                                                       \
  /* rows [r0, r1) of kvHeads · n (row r = kv head r / n, token r % n) */               \
  KV_EXPORT void kvUnpackRows(const KvUnpack&, int64_t r0, int64_t r1);                           \
  }
KV_DECLARE_UNPACK(avx2)
KV_DECLARE_UNPACK(avx512)

}  // namespace kv
