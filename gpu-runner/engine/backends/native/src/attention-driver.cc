// attention(mem, q, k, v, out, lse, nq, H, Hkv, d, scale, qStride, kvHeadStride, kvPosStride, qpos0, nk)
// Splits the (query, head) rows of each kv head into units of up to attnRowsMax rows (GQA: a unit's rows
// share K/V tiles). Enough units (prefill): each attends all its keys and normalises in place; units are
// claimed heaviest first (the causal mask gives later queries more keys). Few units (decode): every unit's
// keys are also split into chunks run in parallel, then merged by log-sum-exp.
#include <cmath>
#include "binding.h"

namespace kv {

namespace {
/** out rows (and lse) of a unit from its partial: o / l, lse = m + log l */
void finish(const Attention& a, int g, int r0, int R, const float* o, const float* m, const float* l) {
  const int G = a.H / a.Hkv;
  for (int r = 0; r < R; r++) {
    const int flat = r0 + r;
    const int i = flat / G, h = g * G + flat % G;
    float* dst = a.out + i * a.qStride + h * a.d;
    const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
    for (int dd = 0; dd < a.d; dd++) dst[dd] = o[r * a.d + dd] * inv;
    if (a.lse) a.lse[i * a.H + h] = l[r] > 0 ? m[r] + std::log(l[r]) : -INFINITY;
  }
}
}  // namespace

napi_value attentionFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 16, "attention");
    State& s = state();
    const Mem mem = memArg(c, 0);
    Attention a{};
    a.nq = static_cast<int32_t>(c.int64(6, "nq", 1));
    a.H = static_cast<int32_t>(c.int64(7, "heads", 1));
    a.Hkv = static_cast<int32_t>(c.int64(8, "kvHeads", 1));
    a.d = static_cast<int32_t>(c.int64(9, "headDim", 16));
    if (a.H % a.Hkv) throw Error("attention: heads must be a multiple of kvHeads");
    if (a.d % 16 || a.d > 256) throw Error("attention: headDim must be a multiple of 16 and ≤ 256");
    a.scale = static_cast<float>(c.num(10, "scale"));
    a.qStride = c.int64(11, "qStride", a.H * a.d);
    a.kvHeadStride = c.int64(12, "kvHeadStride", 0);
    a.kvPosStride = c.int64(13, "kvPosStride", a.d);
    a.qpos0 = static_cast<int32_t>(c.int64(14, "qpos0", -1));
    a.nk = static_cast<int32_t>(c.int64(15, "nk", 0));
    const int64_t qBytes = ((a.nq - 1) * a.qStride + a.H * a.d) * 4;
    a.q = mem.at<const float>(c.int64(1, "q"), qBytes, "q");
    const int64_t kvBytes = a.nk == 0 ? 0 : ((a.Hkv - 1) * a.kvHeadStride + (a.nk - 1) * a.kvPosStride + a.d) * 4;
    a.k = mem.at<const float>(c.int64(2, "k"), kvBytes, "k");
    a.v = mem.at<const float>(c.int64(3, "v"), kvBytes, "v");
    a.out = mem.at<float>(c.int64(4, "out"), qBytes, "out");
    const int64_t lse = c.int64(5, "lse");
    a.lse = lse ? mem.at<float>(lse, static_cast<int64_t>(a.nq) * a.H * 4, "lse") : nullptr;

    std::lock_guard<std::mutex> lock(s.op);
    const int RMAX = s.level->attnRowsMax();
    const int G = a.H / a.Hkv;
    const int rowsPerHead = a.nq * G;
    const int rowChunks = (rowsPerHead + RMAX - 1) / RMAX;
    const int rowUnits = a.Hkv * rowChunks;
    const int threads = s.pool.threads();
    int kchunks = 1;
    if (rowUnits < 2 * threads && a.nk >= 512) kchunks = std::min((a.nk + 255) / 256, (8 * threads + rowUnits - 1) / rowUnits);
    const int kstep = ((a.nk + kchunks - 1) / kchunks + 63) / 64 * 64;
    kchunks = std::max(1, (a.nk + kstep - 1) / kstep);
    const int units = rowUnits * kchunks;
    const int64_t per = static_cast<int64_t>(RMAX) * a.d + 2 * RMAX;  // floats of one partial
    const int slots = kchunks == 1 ? threads : units;
    if (s.partials.size() < static_cast<size_t>(per * slots)) s.partials.resize(per * slots);
    float* base = s.partials.data();
    auto partial = [&](int slot) {
      float* p = base + per * slot;
      return AttnPartial{p, p + static_cast<int64_t>(RMAX) * a.d, p + static_cast<int64_t>(RMAX) * a.d + RMAX};
    };
    const int64_t work = static_cast<int64_t>(a.nq) * a.H * a.d * std::max(1, a.nk);
    const int parts = s.pool.threads() == 1 || work < (1 << 17) ? 1 : units;
    s.pool.run(parts == 1 ? 1 : units, [&](int p, int tid) {
      for (int u = parts == 1 ? 0 : p; u < (parts == 1 ? units : p + 1); u++) {
        if (kchunks == 1) {
          // heaviest first: the last row chunks hold the latest queries
          const int rc = rowChunks - 1 - u / a.Hkv, g = u % a.Hkv;
          const int r0 = rc * RMAX, R = std::min(RMAX, rowsPerHead - r0);
          const AttnPartial pt = partial(tid);
          s.level->attendUnit(a, g, r0, R, 0, a.nk, pt);
          finish(a, g, r0, R, pt.o, pt.m, pt.l);
        } else {
          const int ru = u / kchunks, kc = u % kchunks;
          const int rc = ru / a.Hkv, g = ru % a.Hkv;
          const int r0 = rc * RMAX, R = std::min(RMAX, rowsPerHead - r0);
          s.level->attendUnit(a, g, r0, R, kc * kstep, std::min(a.nk, (kc + 1) * kstep), partial(u));
        }
      }
    });
    if (kchunks > 1) {
      std::vector<float> o(static_cast<size_t>(RMAX) * a.d), m(RMAX), l(RMAX);
      for (int ru = 0; ru < rowUnits; ru++) {
        const int rc = ru / a.Hkv, g = ru % a.Hkv;
        const int r0 = rc * RMAX, R = std::min(RMAX, rowsPerHead - r0);
        for (int r = 0; r < R; r++) {
          float mx = -1e30f;
          for (int kc = 0; kc < kchunks; kc++) mx = std::max(mx, partial(ru * kchunks + kc).m[r]);
          float lsum = 0;
          std::fill(o.begin() + r * a.d, o.begin() + (r + 1) * a.d, 0.0f);
          for (int kc = 0; kc < kchunks; kc++) {
            const AttnPartial pt = partial(ru * kchunks + kc);
            if (pt.l[r] <= 0) continue;
            const float w = std::exp(pt.m[r] - mx);
            lsum += pt.l[r] * w;
            for (int dd = 0; dd < a.d; dd++) o[r * a.d + dd] += pt.o[r * a.d + dd] * w;
          }
          m[r] = mx;
          l[r] = lsum;
        }
        finish(a, g, r0, R, o.data(), m.data(), l.data());
      }
    }
    return undefinedValue(env);
  });
}

}  // namespace kv
