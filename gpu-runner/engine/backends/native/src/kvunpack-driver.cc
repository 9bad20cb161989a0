// kvUnpack(mem, src, dst, dtype, isKey, kvHeads, n, headDim, keyGroup, valueGroup, rowBytes, steps, mins,
// headStride, delta, invFreq, hadamard[, kvType, scales, scaleHeadStride]): one artifact section at byte offset src (kv-codec.ts layout;
// steps / mins are byte offsets within the section, quantized dtypes only) → cache rows at dst (kv head
// 0, first position; kv heads headStride floats apart). dtype 0 f32, 1 f16, 2 int8, 3 int4; keys
// re-rotated by Δ = delta when invFreq (a byte offset of [headDim/2] f32) ≠ 0, the angle f32(Δ · invFreq[i])
// as the rope kernel's; hadamard = 1: int8/int4 keys stored multiplied by H/√headDim; kvType (was `half`)
// 1: the cache holds IEEE halves (dst, headStride in halves; rounded to nearest even); 2: int8 codes (dst,
// headStride in bytes) with an f32 scale per row at scales (a byte offset; scaleHeadStride floats between
// kv heads). Every range is
// checked before the kernel (kvunpack.cc) runs; rows are split over the pool.
#include "binding.h"
#include "kvunpack.h"

namespace kv {

napi_value kvUnpackFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 17, "kvUnpack");
    State& s = state();
    const Mem m = memArg(c, 0);
    KvUnpack a{};
    a.dtype = static_cast<int32_t>(c.int64(3, "dtype"));
    if (a.dtype > KV_INT4) throw Error("kvUnpack: dtype must be 0 (f32), 1 (f16), 2 (int8) or 3 (int4)");
    a.isKey = c.int64(4, "isKey") != 0;
    a.kvHeads = static_cast<int32_t>(c.int64(5, "kvHeads", 1));
    a.n = static_cast<int32_t>(c.int64(6, "n", 0));
    a.d = static_cast<int32_t>(c.int64(7, "headDim", 1));
    a.kg = static_cast<int32_t>(c.int64(8, "keyGroup", 1));
    a.vg = static_cast<int32_t>(c.int64(9, "valueGroup", 1));
    a.rowBytes = c.int64(10, "rowBytes");
    a.headStride = c.int64(13, "headStride");
    const int64_t delta = c.int64(14, "delta", -(int64_t{1} << 31));
    const int64_t invFreq = c.int64(15, "invFreq");
    a.hadamard = c.int64(16, "hadamard") != 0;
    const int64_t kvType = c.argc > 17 ? c.int64(17, "kvType") : 0;
    if (kvType < 0 || kvType > 2) throw Error("kvUnpack: kvType must be 0 (f32), 1 (f16) or 2 (int8)");
    const bool half = kvType == 1, q8 = kvType == 2;
    const int64_t d = a.d, n = a.n, rows = int64_t{a.kvHeads} * n;
    const bool quantized = a.dtype == KV_INT8 || a.dtype == KV_INT4;
    if (d > KV_UNPACK_MAX_D) throw Error("kvUnpack: headDim above " + std::to_string(KV_UNPACK_MAX_D));
    if (a.n > (1 << 30)) throw Error("kvUnpack: n too large");
    if (a.kvHeads > 1 && a.headStride < n * d) throw Error("kvUnpack: headStride overlaps the rows");
    if (quantized) {
      if (a.dtype == KV_INT4 && d % 2) throw Error("kvUnpack: int4 needs an even headDim");
      if (a.rowBytes < (a.dtype == KV_INT8 ? d : d / 2)) throw Error("kvUnpack: rowBytes shorter than a code row");
      if (!a.isKey && d % a.vg) throw Error("kvUnpack: valueGroup must divide headDim");
    }
    if (a.hadamard && (!quantized || !a.isKey || d < 4 || (d & (d - 1))))
      throw Error("kvUnpack: the Hadamard key transform needs int8/int4 keys and a power-of-two headDim ≥ 4");
    const int64_t src = c.int64(1, "src");
    const int64_t elem = a.dtype == KV_F32 ? 4 : 2;
    a.src = m.at<const uint8_t>(src, quantized ? rows * a.rowBytes : rows * d * elem, "src");
    if (quantized) {
      const int64_t groups = (n + a.kg - 1) / a.kg;
      const int64_t stepBytes = a.isKey ? int64_t{a.kvHeads} * groups * d * 2 : rows * (d / a.vg) * 2;
      a.steps = m.at<const uint16_t>(src + c.int64(11, "steps"), stepBytes, "steps");
      if (a.isKey) a.mins = m.at<const uint16_t>(src + c.int64(12, "mins"), stepBytes, "mins");
    }
    if (rows == 0) return undefinedValue(env);
    const int64_t dstElems = (a.kvHeads - 1) * a.headStride + n * d;
    if (q8) {
      a.scaleHeadStride = c.int64(19, "scaleHeadStride");
      if (a.kvHeads > 1 && a.scaleHeadStride < n) throw Error("kvUnpack: scaleHeadStride overlaps the scales");
      a.dstQ8 = m.at<int8_t>(c.int64(2, "dst"), dstElems, "dst");
      a.dstScale = m.at<float>(c.int64(18, "scales"), ((a.kvHeads - 1) * a.scaleHeadStride + n) * 4, "scales");
    } else if (half) a.dstHalf = m.at<uint16_t>(c.int64(2, "dst"), dstElems * 2, "dst");
    else a.dst = m.at<float>(c.int64(2, "dst"), dstElems * 4, "dst");
    // cos [d/2] then sin [d/2] of f32(Δ · invFreq[i]), as the rope kernel computes them
    std::vector<float> cs;
    if (a.isKey && invFreq != 0 && delta != 0) {
      if (d % 2) throw Error("kvUnpack: re-rotation needs an even headDim");
      const float* f = m.at<const float>(invFreq, d / 2 * 4, "invFreq");
      cs.resize(d);
      const float p = static_cast<float>(delta);
      for (int64_t i = 0; i < d / 2; i++) {
        const float ang = p * f[i];
        cs[i] = std::cos(ang);
        cs[d / 2 + i] = std::sin(ang);
      }
      a.cs = cs.data();
    }
    auto* rowsFn = std::strcmp(s.level->name, "avx2") == 0 ? avx2::kvUnpackRows : avx512::kvUnpackRows;
    std::lock_guard<std::mutex> lock(s.op);
    // a 512-token section is ~10^5 floats: worth splitting (the workers spin between ops), in a few parts
    // per thread so that a worker descheduled mid-part holds up little of it
    const int parts = s.pool.threads() == 1 || rows * d < (1 << 14)
                          ? 1
                          : static_cast<int>(std::min<int64_t>(rows / 64, s.pool.threads() * 4));
    s.pool.run(parts, [&](int p, int) { rowsFn(a, rows * p / parts, rows * (p + 1) / parts); });
    return undefinedValue(env);
  });
}

}  // namespace kv
