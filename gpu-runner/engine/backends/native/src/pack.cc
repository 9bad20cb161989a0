// Weight packing (ISA-independent, once at upload): ggml Q8_0 / Q4_0 rows → the interleaved layout the
// int8 kernels read (quant.cc). ggml: each row of K is K/32 blocks; Q8_0 block = f16 d + 32 int8 q
// (value q·d, 34 bytes); Q4_0 block = f16 d + 16 bytes, element i < 16 the low nibble of byte i,
// i ≥ 16 the high nibble of byte i − 16 (value (q − 8)·d, 18 bytes).
// Packed: per group of 16 rows (the last one padded with zero scales), per block: 16 f16 scales
// (32 bytes), then Q8_0: [8 k/4 steps][16 rows][4 k] bytes of q + 128 (512 bytes); Q4_0: [4 pairs of
// k/4 steps][16 rows][4 k] bytes holding step 2p in the low and step 2p+1 in the high nibble (256 bytes).
// Same byte count as ggml for N a multiple of 16. unpackRow reads one row back as f32 (embedding gathers
// from a packed table).
#include <cmath>
#include <cstring>
#include "kernels.h"
#include "pack.h"

namespace kv {

int64_t ggmlBlockBytes(int32_t type) { return type == W_Q8_0 ? 34 : 18; }
int64_t packedBlockBytes(int32_t type) { return 32 + (type == W_Q8_0 ? 512 : 256); }

int64_t packedBytes(int32_t type, int64_t N, int64_t K) {
  return ((N + 15) / 16) * (K / 32) * packedBlockBytes(type);
}

namespace {
/** quant k (0..31) of a ggml block, as stored: Q8_0 the int8 + 128, Q4_0 the nibble */
inline uint8_t quant(int32_t type, const uint8_t* blk, int k) {
  if (type == W_Q8_0) return static_cast<uint8_t>(static_cast<int8_t>(blk[2 + k]) + 128);
  return k < 16 ? blk[2 + k] & 0x0f : blk[2 + k - 16] >> 4;
}
}  // namespace

void packWeights(int32_t type, const uint8_t* src, int64_t N, int64_t K, uint8_t* dst) {
  const int64_t nb = K / 32;
  const int64_t gb = ggmlBlockBytes(type);
  const int64_t pb = packedBlockBytes(type);
  const uint8_t pad = type == W_Q8_0 ? 128 : 8;  // value 0 (and the scale is 0)
  for (int64_t g = 0; g < (N + 15) / 16; g++) {
    for (int64_t b = 0; b < nb; b++) {
      uint8_t* out = dst + (g * nb + b) * pb;
      const uint8_t* blk[16];
      for (int c = 0; c < 16; c++) {
        const int64_t n = g * 16 + c;
        blk[c] = n < N ? src + (n * nb + b) * gb : nullptr;
        if (blk[c]) std::memcpy(out + 2 * c, blk[c], 2);
        else std::memset(out + 2 * c, 0, 2);
      }
      uint8_t* q = out + 32;
      if (type == W_Q8_0) {
        for (int s = 0; s < 8; s++)
          for (int c = 0; c < 16; c++)
            for (int t = 0; t < 4; t++) q[s * 64 + c * 4 + t] = blk[c] ? quant(type, blk[c], s * 4 + t) : pad;
      } else {
        for (int p = 0; p < 4; p++)
          for (int c = 0; c < 16; c++)
            for (int t = 0; t < 4; t++) {
              const uint8_t lo = blk[c] ? quant(type, blk[c], 8 * p + t) : pad;
              const uint8_t hi = blk[c] ? quant(type, blk[c], 8 * p + 4 + t) : pad;
              q[p * 64 + c * 4 + t] = static_cast<uint8_t>(lo | (hi << 4));
            }
      }
    }
  }
}

namespace {
/** IEEE half bits → float (exact; the baseline build has no F16C) */
float halfToFloat(uint16_t h) {
  const int32_t e = (h >> 10) & 0x1f;
  const int32_t m = h & 0x3ff;
  float v;
  if (e == 0) v = std::ldexp(static_cast<float>(m), -24);
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = std::ldexp(static_cast<float>(m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}
}  // namespace

void unpackRow(int32_t type, const uint8_t* packed, int64_t K, int64_t row, float* out) {
  const int64_t nb = K / 32;
  const int64_t pb = packedBlockBytes(type);
  const int64_t g = row / 16;
  const int c = static_cast<int>(row % 16);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = packed + (g * nb + b) * pb;
    uint16_t bits;
    std::memcpy(&bits, blk + 2 * c, 2);
    const float d = halfToFloat(bits);
    const uint8_t* q = blk + 32;
    for (int k = 0; k < 32; k++) {
      int v;
      if (type == W_Q8_0) {
        v = static_cast<int>(q[(k / 4) * 64 + c * 4 + k % 4]) - 128;
      } else {
        const uint8_t byte = q[(k / 8) * 64 + c * 4 + k % 4];
        v = ((k % 8) < 4 ? byte & 0x0f : byte >> 4) - 8;
      }
      out[b * 32 + k] = static_cast<float>(v) * d;
    }
  }
}

}  // namespace kv
