// rmsnorm(mem, x, w, y, M, D, eps), rope(mem, x, y, positions, invFreq, M, width, headDim), add(mem, a, b, y, n):
// the light ops between a step's matmuls, on the native pool (rows or ranges split only when a prefill-sized
// op is worth a wake-up). RoPE's angles a = f32(position · invFreq[i]) have their cos/sin computed once per
// distinct (positions, invFreq) — in double, rounded to f32, as the reference backend does — and kept: every
// layer's q and k of a step rotate by the same positions, so a forward pass computes them once.
#include "binding.h"

namespace kv {

namespace {
/** The last RoPE table: its inputs (compared by value) and cos/sin rows [M][headDim] (cos half, sin half). */
struct RopeTable {
  std::vector<int32_t> positions;
  std::vector<float> invFreq;
  std::vector<float> cs;
};
RopeTable& ropeTable() {
  static RopeTable* t = new RopeTable();
  return *t;
}

/** cos/sin rows for positions [M] and invFreq [half] (the cached ones when the inputs are the same) */
const float* ropeAngles(const int32_t* pos, int64_t M, const float* freq, int64_t half) {
  RopeTable& t = ropeTable();
  const bool same = static_cast<int64_t>(t.positions.size()) == M && static_cast<int64_t>(t.invFreq.size()) == half &&
                    std::equal(pos, pos + M, t.positions.begin()) && std::equal(freq, freq + half, t.invFreq.begin());
  if (same) return t.cs.data();
  t.positions.assign(pos, pos + M);
  t.invFreq.assign(freq, freq + half);
  t.cs.resize(static_cast<size_t>(M * 2 * half));
  for (int64_t m = 0; m < M; m++)
    for (int64_t i = 0; i < half; i++) {
      const float a = static_cast<float>(pos[m]) * freq[i];
      t.cs[m * 2 * half + i] = static_cast<float>(std::cos(static_cast<double>(a)));
      t.cs[m * 2 * half + half + i] = static_cast<float>(std::sin(static_cast<double>(a)));
    }
  return t.cs.data();
}
}  // namespace

napi_value rmsnormFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 7, "rmsnorm");
    State& s = state();
    const Mem m = memArg(c, 0);
    const int64_t M = c.int64(4, "M", 0), D = c.int64(5, "D", 1);
    const float eps = static_cast<float>(c.num(6, "eps"));
    const float* x = m.at<const float>(c.int64(1, "x"), M * D * 4, "x");
    const float* w = m.at<const float>(c.int64(2, "w"), D * 4, "w");
    float* y = m.at<float>(c.int64(3, "y"), M * D * 4, "y");
    std::lock_guard<std::mutex> lock(s.op);
    const int parts = partsFor(M * D, M);
    s.pool.run(parts, [&](int p, int) { s.level->rmsnorm(x, w, y, D, eps, M * p / parts, M * (p + 1) / parts); });
    return undefinedValue(env);
  });
}

napi_value ropeFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 8, "rope");
    State& s = state();
    const Mem m = memArg(c, 0);
    const int64_t M = c.int64(5, "M", 0), width = c.int64(6, "width", 1), headDim = c.int64(7, "headDim", 2);
    if (headDim % 2 || width % headDim) throw Error("rope: headDim must be even and divide width");
    const int64_t half = headDim / 2;
    const float* x = m.at<const float>(c.int64(1, "x"), M * width * 4, "x");
    float* y = m.at<float>(c.int64(2, "y"), M * width * 4, "y");
    const auto* pos = m.at<const int32_t>(c.int64(3, "positions"), M * 4, "positions");
    const float* freq = m.at<const float>(c.int64(4, "invFreq"), half * 4, "invFreq");
    std::lock_guard<std::mutex> lock(s.op);
    const float* cs = ropeAngles(pos, M, freq, half);
    const int parts = partsFor(M * width, M);
    s.pool.run(parts, [&](int p, int) { s.level->rope(x, y, cs, width, headDim, M * p / parts, M * (p + 1) / parts); });
    return undefinedValue(env);
  });
}

napi_value addFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 5, "add");
    State& s = state();
    const Mem m = memArg(c, 0);
    const int64_t n = c.int64(4, "n", 0);
    const float* a = m.at<const float>(c.int64(1, "a"), n * 4, "a");
    const float* b = m.at<const float>(c.int64(2, "b"), n * 4, "b");
    float* y = m.at<float>(c.int64(3, "y"), n * 4, "y");
    std::lock_guard<std::mutex> lock(s.op);
    const int64_t units = (n + 255) / 256;
    const int parts = partsFor(n, units);
    s.pool.run(parts, [&](int p, int) {
      s.level->add(a, b, y, std::min(n, units * p / parts * 256), std::min(n, units * (p + 1) / parts * 256));
    });
    return undefinedValue(env);
  });
}

}  // namespace kv
