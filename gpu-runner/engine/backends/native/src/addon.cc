// N-API binding of the native CPU kernels. Every kernel takes the JS side's memory (a typed array or
// ArrayBuffer; pass `new Uint8Array(sharedBuffer)` for a SharedArrayBuffer such as the wasm backend's
// memory) and byte offsets into it; operands are bounds-checked before any kernel runs. The ISA level
// is chosen by cpuid at load (best supported) and can be lowered with configure(); work is split over
// the native pool (pool.h). Shapes and layouts: kernels.h.
#include <sys/mman.h>
#include <ctime>
#include "binding.h"
#include "squeezed.h"
#include "pack.h"

namespace kv {
namespace {

/** runs f(n0, n1) over column ranges of `step` columns split into parts */
template <typename F>
void splitColumns(int64_t N, int64_t work, F&& f) {
  const int64_t units = (N + 31) / 32;
  const int parts = partsFor(work, units);
  state().pool.run(parts, [&](int p, int) {
    const int64_t u0 = units * p / parts, u1 = units * (p + 1) / parts;
    f(u0 * 32, std::min(N, u1 * 32));
  });
}

// --- kernels ------------------------------------------------------------------------------------------
// matmulF32(mem, x, w, bias, y, M, N, K, f16, halfScale)
napi_value matmulF32(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 10, "matmulF32");
    State& s = state();
    const Mem m = memArg(c, 0);
    const int64_t M = c.int64(5, "M", 1), N = c.int64(6, "N", 1), K = c.int64(7, "K", 1);
    const bool f16 = c.num(8, "f16") != 0;
    MatmulF a{};
    a.x = m.at<const float>(c.int64(1, "x"), M * K * 4, "x");
    a.w = m.at<const void>(c.int64(2, "w"), N * K * (f16 ? 2 : 4), "w");
    const int64_t bias = c.int64(3, "bias");
    a.bias = bias ? m.at<const float>(bias, N * 4, "bias") : nullptr;
    a.y = m.at<float>(c.int64(4, "y"), M * N * 4, "y");
    a.M = M, a.N = N, a.K = K, a.f16 = f16;
    a.halfScale = static_cast<float>(c.num(9, "halfScale"));
    std::lock_guard<std::mutex> lock(s.op);
    splitColumns(N, M * N * K, [&](int64_t n0, int64_t n1) { s.level->matmulF(a, n0, n1); });
    return undefinedValue(env);
  });
}

int32_t quantType(const Call& c, size_t i) {
  const int64_t t = c.int64(i, "type");
  if (t != W_Q8_0 && t != W_Q4_0) throw Error("type must be 2 (Q8_0) or 3 (Q4_0)");
  return static_cast<int32_t>(t);
}

// packedBytes(type, N, K)
napi_value packedBytesFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 3, "packedBytes");
    const int32_t type = quantType(c, 0);
    const int64_t N = c.int64(1, "N", 1), K = c.int64(2, "K", 32);
    if (K % 32) throw Error("K must be a multiple of 32 for Q8_0/Q4_0");
    napi_value out;
    napi_create_double(env, static_cast<double>(packedBytes(type, N, K)), &out);
    return out;
  });
}

// packWeights(type, src, srcOff, N, K, dst, dstOff)
napi_value packWeightsFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 7, "packWeights");
    const int32_t type = quantType(c, 0);
    const int64_t N = c.int64(3, "N", 1), K = c.int64(4, "K", 32);
    if (K % 32) throw Error("K must be a multiple of 32 for Q8_0/Q4_0");
    const Mem src = memArg(c, 1), dst = memArg(c, 5);
    const auto* sp = src.at<const uint8_t>(c.int64(2, "srcOff"), N * (K / 32) * ggmlBlockBytes(type), "src");
    auto* dp = dst.at<uint8_t>(c.int64(6, "dstOff"), packedBytes(type, N, K), "dst");
    packWeights(type, sp, N, K, dp);
    return undefinedValue(env);
  });
}

// matmulQ(mem, x, w, bias, y, M, N, K, type): w packed (packWeights)
napi_value matmulQFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 9, "matmulQ");
    State& s = state();
    const Mem m = memArg(c, 0);
    const int64_t M = c.int64(5, "M", 1), N = c.int64(6, "N", 1), K = c.int64(7, "K", 32);
    if (K % 32) throw Error("K must be a multiple of 32 for Q8_0/Q4_0");
    MatmulQ a{};
    a.type = quantType(c, 8);
    const float* x = m.at<const float>(c.int64(1, "x"), M * K * 4, "x");
    a.w = m.at<const uint8_t>(c.int64(2, "w"), packedBytes(a.type, N, K), "w");
    const int64_t bias = c.int64(3, "bias");
    a.bias = bias ? m.at<const float>(bias, N * 4, "bias") : nullptr;
    a.y = m.at<float>(c.int64(4, "y"), M * N * 4, "y");
    a.M = M, a.N = N, a.K = K;
    std::lock_guard<std::mutex> lock(s.op);
    const int64_t nb = K / 32;
    const size_t need = static_cast<size_t>(M * K + 2 * M * nb * 4 + 64);
    if (s.quant.size() < need) s.quant.resize(need);
    uint8_t* base = s.quant.data();
    a.qx.xd = reinterpret_cast<float*>(base);
    a.qx.xc = a.qx.xd + M * nb;
    a.qx.xq = reinterpret_cast<int8_t*>(a.qx.xc + M * nb);
    const float off = s.level->weightOffset(a.type);
    const int qparts = partsFor(M * K * 8, M);
    s.pool.run(qparts, [&](int p, int) {
      s.level->quantizeX(x, K, a.qx, M * p / qparts, M * (p + 1) / qparts, off);
    });
    splitColumns(N, M * N * K / 4, [&](int64_t n0, int64_t n1) { s.level->matmulQ(a, n0, n1); });
    return undefinedValue(env);
  });
}

// gatherQ(mem, w, ids, y, M, N, K, type): y[m] = row ids[m] of packed w (N rows × K), dequantized
napi_value gatherQFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 8, "gatherQ");
    const Mem m = memArg(c, 0);
    const int64_t M = c.int64(4, "M", 0), N = c.int64(5, "N", 1), K = c.int64(6, "K", 32);
    if (K % 32) throw Error("K must be a multiple of 32 for Q8_0/Q4_0");
    const int32_t type = quantType(c, 7);
    const auto* w = m.at<const uint8_t>(c.int64(1, "w"), packedBytes(type, N, K), "w");
    const auto* ids = m.at<const int32_t>(c.int64(2, "ids"), M * 4, "ids");
    float* y = m.at<float>(c.int64(3, "y"), M * K * 4, "y");
    for (int64_t i = 0; i < M; i++)
      if (ids[i] < 0 || ids[i] >= N) throw Error("ids: row " + std::to_string(ids[i]) + " outside the weights");
    for (int64_t i = 0; i < M; i++) unpackRow(type, w, K, ids[i], y + i * K);
    return undefinedValue(env);
  });
}

// kvWrite(mem, k, v, width, headDim, spans[, half]): rows of k and v [*][width] (width = kvHeads · headDim)
// into caches; spans: Float64Array of 5 per span: dk, dv (byte offsets of the span's first position in head
// 0 of the layer), kvHeadStride (elements between heads), row (first source row), count — row row + i goes
// to position i of every head: dk + (h · kvHeadStride + i · headDim) · element bytes; kvType (was `half`): 0 f32
// caches, 1 IEEE halves (rounded to nearest even), 2 int8 rows (quantizeRow) — spans then hold 8 numbers:
// also dks, dvs (byte offsets of the span's first position's scales in head 0) and scaleHeadStride (floats)
napi_value kvWriteFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 6, "kvWrite");
    const Mem m = memArg(c, 0);
    const int64_t width = c.int64(3, "width", 1), d = c.int64(4, "headDim", 1);
    if (width % d) throw Error("kvWrite: width must be a multiple of headDim");
    const int64_t kvHeads = width / d;
    const int64_t kvType = c.argc > 6 ? c.int64(6, "kvType") : 0;
    if (kvType < 0 || kvType > 2) throw Error("kvWrite: kvType must be 0 (f32), 1 (f16) or 2 (int8)");
    const bool half = kvType == 1, q8 = kvType == 2;
    const int SPAN_FIELDS = q8 ? 8 : 5;
    const Mem desc = memArg(c, 5);
    if (desc.bytes % (SPAN_FIELDS * 8))
      throw Error("kvWrite: spans must hold " + std::to_string(SPAN_FIELDS) + " numbers per span");
    const int64_t count = desc.bytes / (SPAN_FIELDS * 8);
    const int64_t k0 = c.int64(1, "k"), v0 = c.int64(2, "v");
    const int64_t eb = half ? 2 : q8 ? 1 : 4;
    for (int64_t i = 0; i < count; i++) {
      double f[8];
      std::memcpy(f, desc.data + i * SPAN_FIELDS * 8, SPAN_FIELDS * 8);
      for (int j = 0; j < SPAN_FIELDS; j++) {
        const double x = f[j];
        if (!integerIn(x, 0))
          throw Error("kvWrite: span " + std::to_string(i) + " fields must be integers ≥ 0");
      }
      const int64_t headStride = static_cast<int64_t>(f[2]), row = static_cast<int64_t>(f[3]);
      const int64_t n = static_cast<int64_t>(f[4]);
      if (n == 0) continue;
      if (kvHeads > 1 && headStride < n * d) throw Error("kvWrite: kvHeadStride overlaps the span's rows");
      const int64_t dst = ((kvHeads - 1) * headStride + n * d) * eb;
      uint8_t* dk = m.at<uint8_t>(static_cast<int64_t>(f[0]), dst, "dk");
      uint8_t* dv = m.at<uint8_t>(static_cast<int64_t>(f[1]), dst, "dv");
      const float* sk = m.at<const float>(k0 + row * width * 4, n * width * 4, "k");
      const float* sv = m.at<const float>(v0 + row * width * 4, n * width * 4, "v");
      float *dks = nullptr, *dvs = nullptr;
      const int64_t shs = q8 ? static_cast<int64_t>(f[7]) : 0;
      if (q8) {
        if (kvHeads > 1 && shs < n) throw Error("kvWrite: scaleHeadStride overlaps the span's scales");
        const int64_t sb = ((kvHeads - 1) * shs + n) * 4;
        dks = m.at<float>(static_cast<int64_t>(f[5]), sb, "dks");
        dvs = m.at<float>(static_cast<int64_t>(f[6]), sb, "dvs");
      }
      for (int64_t h = 0; h < kvHeads; h++)
        for (int64_t r = 0; r < n; r++) {
          const int64_t at = (h * headStride + r * d) * eb;
          if (q8) {
            quantizeRow(sk + r * width + h * d, reinterpret_cast<int8_t*>(dk + at), dks + h * shs + r, d);
            quantizeRow(sv + r * width + h * d, reinterpret_cast<int8_t*>(dv + at), dvs + h * shs + r, d);
          } else if (half) {
            toHalf(sk + r * width + h * d, reinterpret_cast<uint16_t*>(dk + at), d);
            toHalf(sv + r * width + h * d, reinterpret_cast<uint16_t*>(dv + at), d);
          } else {
            std::memcpy(dk + at, sk + r * width + h * d, d * 4);
            std::memcpy(dv + at, sv + r * width + h * d, d * 4);
          }
        }
    }
    return undefinedValue(env);
  });
}

// kvConvert(mem, src, dst, heads, rows, width, srcHeadStride, srcRowStride, dstHeadStride, dstRowStride,
// toHalf): heads × rows × width elements between an f16 KV cache and f32 (strides in elements of each
// side): toHalf ≠ 0: src f32 → dst halves (loads into the cache), else src halves → dst f32 (reads)
napi_value kvConvertFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 11, "kvConvert");
    const Mem m = memArg(c, 0);
    const int64_t heads = c.int64(3, "heads"), rows = c.int64(4, "rows"), width = c.int64(5, "width");
    const int64_t shs = c.int64(6, "srcHeadStride"), srs = c.int64(7, "srcRowStride");
    const int64_t dhs = c.int64(8, "dstHeadStride"), drs = c.int64(9, "dstRowStride");
    const bool narrow = c.int64(10, "toHalf") != 0;
    if (heads == 0 || rows == 0 || width == 0) return undefinedValue(env);
    const int64_t sb = narrow ? 4 : 2, db = narrow ? 2 : 4;
    uint8_t* src = m.at<uint8_t>(c.int64(1, "src"), ((heads - 1) * shs + (rows - 1) * srs + width) * sb, "src");
    uint8_t* dst = m.at<uint8_t>(c.int64(2, "dst"), ((heads - 1) * dhs + (rows - 1) * drs + width) * db, "dst");
    for (int64_t h = 0; h < heads; h++)
      for (int64_t r = 0; r < rows; r++) {
        uint8_t* s = src + (h * shs + r * srs) * sb;
        uint8_t* d = dst + (h * dhs + r * drs) * db;
        if (narrow) toHalf(reinterpret_cast<const float*>(s), reinterpret_cast<uint16_t*>(d), width);
        else fromHalf(reinterpret_cast<const uint16_t*>(s), reinterpret_cast<float*>(d), width);
      }
    return undefinedValue(env);
  });
}

// kvConvertQ8(mem, codes, scales, f, heads, rows, width, codeHeadStride, codeRowStride, scaleHeadStride,
// fHeadStride, fRowStride, toQ8): heads × rows rows of width values between an int8 KV cache (codes, strides
// in bytes; one f32 scale per row at scales + (h · scaleHeadStride + r) · 4) and f32 (strides in floats):
// toQ8 ≠ 0: f rows quantized into the cache (quantizeRow), else the cache's rows dequantized into f
napi_value kvConvertQ8Fn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 13, "kvConvertQ8");
    const Mem m = memArg(c, 0);
    const int64_t heads = c.int64(4, "heads"), rows = c.int64(5, "rows"), width = c.int64(6, "width");
    const int64_t chs = c.int64(7, "codeHeadStride"), crs = c.int64(8, "codeRowStride");
    const int64_t shs = c.int64(9, "scaleHeadStride");
    const int64_t fhs = c.int64(10, "fHeadStride"), frs = c.int64(11, "fRowStride");
    const bool toQ8 = c.int64(12, "toQ8") != 0;
    if (heads == 0 || rows == 0 || width == 0) return undefinedValue(env);
    int8_t* q = m.at<int8_t>(c.int64(1, "codes"), (heads - 1) * chs + (rows - 1) * crs + width, "codes");
    float* sc = m.at<float>(c.int64(2, "scales"), ((heads - 1) * shs + rows) * 4, "scales");
    float* f = m.at<float>(c.int64(3, "f"), ((heads - 1) * fhs + (rows - 1) * frs + width) * 4, "f");
    for (int64_t h = 0; h < heads; h++)
      for (int64_t r = 0; r < rows; r++) {
        int8_t* qr = q + h * chs + r * crs;
        float* fr = f + h * fhs + r * frs;
        if (toQ8) quantizeRow(fr, qr, sc + h * shs + r, width);
        else dequantizeRow(qr, sc[h * shs + r], fr, width);
      }
    return undefinedValue(env);
  });
}

// swiglu(mem, gate, up, y, size): y = gate · sigmoid(gate) · up
napi_value swigluFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 5, "swiglu");
    State& s = state();
    const Mem m = memArg(c, 0);
    const int64_t n = c.int64(4, "size", 0);
    const float* g = m.at<const float>(c.int64(1, "gate"), n * 4, "gate");
    const float* u = m.at<const float>(c.int64(2, "up"), n * 4, "up");
    float* y = m.at<float>(c.int64(3, "y"), n * 4, "y");
    std::lock_guard<std::mutex> lock(s.op);
    const int64_t units = (n + 255) / 256;
    const int parts = partsFor(n, units);
    s.pool.run(parts, [&](int p, int) {
      s.level->swiglu(g, u, y, std::min(n, units * p / parts * 256), std::min(n, units * (p + 1) / parts * 256));
    });
    return undefinedValue(env);
  });
}

// argmax(mem, x, out, M, N): out i32 [M] = first index of each row's largest value (x f32 [M][N])
napi_value argmaxFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 5, "argmax");
    State& s = state();
    const Mem m = memArg(c, 0);
    const int64_t M = c.int64(3, "M", 0), N = c.int64(4, "N", 1);
    if (N >= (int64_t{1} << 24)) throw Error("argmax: N must be below 2^24");
    const float* x = m.at<const float>(c.int64(1, "x"), M * N * 4, "x");
    auto* out = m.at<int32_t>(c.int64(2, "out"), M * 4, "out");
    std::lock_guard<std::mutex> lock(s.op);
    const int parts = partsFor(M * N, M);
    s.pool.run(parts, [&](int p, int) { s.level->argmax(x, N, out, M * p / parts, M * (p + 1) / parts); });
    return undefinedValue(env);
  });
}

// info(): { level, levels, threads, spinUs }
napi_value infoFn(napi_env env, napi_callback_info) {
  return guard(env, [&] {
    State& s = state();
    napi_value o, lv, arr, n;
    napi_create_object(env, &o);
    napi_create_string_utf8(env, s.level->name, NAPI_AUTO_LENGTH, &lv);
    napi_set_named_property(env, o, "level", lv);
    napi_create_array_with_length(env, s.supported.size(), &arr);
    for (size_t i = 0; i < s.supported.size(); i++) {
      napi_value e;
      napi_create_string_utf8(env, s.supported[i].c_str(), NAPI_AUTO_LENGTH, &e);
      napi_set_element(env, arr, static_cast<uint32_t>(i), e);
    }
    napi_set_named_property(env, o, "levels", arr);
    napi_create_int32(env, s.pool.threads(), &n);
    napi_set_named_property(env, o, "threads", n);
    napi_create_int32(env, s.pool.spinUs(), &n);
    napi_set_named_property(env, o, "spinUs", n);
    return o;
  });
}

// configure(level, threads, spinUs): level "" keeps the current one
napi_value configureFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 3, "configure");
    State& s = state();
    const std::string name = c.str(0);
    std::lock_guard<std::mutex> lock(s.op);
    if (!name.empty()) {
      if (std::find(s.supported.begin(), s.supported.end(), name) == s.supported.end())
        throw Error("ISA level " + name + " is not supported by this CPU");
      s.level = findLevel(name);
    }
    s.pool.configure(static_cast<int>(c.int64(1, "threads", 1)), static_cast<int>(c.int64(2, "spinUs")));
    return undefinedValue(env);
  });
}

// peak(kind, iterations): per CPU-second of the calling thread (so a loaded machine does not lower it):
// "fma" f32 flops, "dot" int8 ops (2 per multiply-add) of independent chains at the current level;
// "clock" GHz from a chain of dependent adds (one per cycle).
napi_value peakFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 2, "peak");
    State& s = state();
    const std::string kind = c.str(0);
    const int64_t iters = c.int64(1, "iterations", 1);
    std::lock_guard<std::mutex> lock(s.op);
    timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    double ops = 0;
    if (kind == "clock") {
      uint64_t x = 0;
      for (int64_t i = 0; i < iters; i += 8)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
      ops = static_cast<double>(iters);
    } else if (kind == "fma") {
      ops = s.level->peakFma(iters);
    } else if (kind == "dot") {
      ops = s.level->peakDot(iters);
    } else {
      throw Error("peak kind must be fma, dot or clock");
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    const double secs = static_cast<double>(t1.tv_sec - t0.tv_sec) + 1e-9 * static_cast<double>(t1.tv_nsec - t0.tv_nsec);
    napi_value out;
    napi_create_double(env, ops / secs, &out);
    return out;
  });
}

// adviseHugePages(mem, reservedBytes) → bool: asks the kernel to back [mem's start, + reservedBytes) with
// transparent huge pages (madvise MADV_HUGEPAGE, 2 MiB-aligned inside the range); reservedBytes must not
// pass the mapping mem lives in (a wasm memory: its declared maximum, reserved up front), so pages it
// grows into later are covered too. A decode step reads 16 KV caches and every weight matrix: with 4 KiB
// pages each is hundreds of TLB misses and page walks per layer. false where the OS has no such advice.
napi_value adviseHugePagesFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 2, "adviseHugePages");
    const Mem m = memArg(c, 0);
    const int64_t bytes = c.int64(1, "reservedBytes", 0);
    bool ok = false;
#ifdef MADV_HUGEPAGE
    constexpr uintptr_t HUGE = uintptr_t{2} << 20;
    const uintptr_t a = reinterpret_cast<uintptr_t>(m.data);
    const uintptr_t lo = (a + HUGE - 1) & ~(HUGE - 1);
    const uintptr_t hi = (a + static_cast<uintptr_t>(bytes)) & ~(HUGE - 1);
    ok = hi > lo && madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE) == 0;
#endif
    napi_value out;
    napi_get_boolean(env, ok, &out);
    return out;
  });
}

}  // namespace
}  // namespace kv

NAPI_MODULE_INIT() {
  kv::State& s = kv::state();
  if (s.supported.empty()) {
    napi_throw_error(env, "KVRAG_NATIVE", "this CPU lacks AVX2 + FMA + F16C (or the OS does not save AVX state)");
    return nullptr;
  }
  if (!s.level) {
    s.level = kv::findLevel(s.supported.front());
    s.pool.configure(1, 100);
  }
  const napi_property_descriptor props[] = {
      {"info", nullptr, kv::infoFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"configure", nullptr, kv::configureFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"peak", nullptr, kv::peakFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"matmulF32", nullptr, kv::matmulF32, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"packedBytes", nullptr, kv::packedBytesFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"packWeights", nullptr, kv::packWeightsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"matmulQ", nullptr, kv::matmulQFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gatherQ", nullptr, kv::gatherQFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"attention", nullptr, kv::attentionFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"attentionSpans", nullptr, kv::attentionSpansFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"kvWrite", nullptr, kv::kvWriteFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"kvConvert", nullptr, kv::kvConvertFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"kvConvertQ8", nullptr, kv::kvConvertQ8Fn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"swiglu", nullptr, kv::swigluFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"argmax", nullptr, kv::argmaxFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rmsnorm", nullptr, kv::rmsnormFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rope", nullptr, kv::ropeFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"add", nullptr, kv::addFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"squeezedSteps", nullptr, kv::squeezedStepsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"kvUnpack", nullptr, kv::kvUnpackFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"adviseHugePages", nullptr, kv::adviseHugePagesFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
