// Weight packing for the int8 kernels (pack.cc).
#pragma once
#include <cstdint>

namespace kv {
int64_t ggmlBlockBytes(int32_t type);
/** bytes of N rows × K of `type` once packed (rows padded to a multiple of 16) */
int64_t packedBytes(int32_t type, int64_t N, int64_t K);
/** ggml rows src [N][K/32 blocks] → dst (packedBytes) */
void packWeights(int32_t type, const uint8_t* src, int64_t N, int64_t K, uint8_t* dst);
/** row `row` of packed weights (N rows × K) dequantized to f32: out [K] */
void unpackRow(int32_t type, const uint8_t* packed, int64_t K, int64_t row, float* out);
}  // namespace kv
