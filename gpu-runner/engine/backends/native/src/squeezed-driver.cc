// squeezedStep(mem, q, out, G, d, scale, n, groups, gStart, gLen, gvals, gm8, gmsum, gms, bm8, bmsum, bms,
// bh8, bhsum, bhs, K, V, always, alwaysPairs, end, take, tau, half, bCount, bFirst) → keys kept (the AVX-512 VNNI kernel at
// that level, else AVX2). Byte offsets into mem (0 = none for gvals / always); every range is checked
// before the kernel (squeezed.cc) runs. K, V: the layer's kv head at position 0, rows of d floats (half: IEEE halves).
#include "binding.h"
#include "squeezed.h"

namespace kv {

napi_value squeezedStepFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 30, "squeezedStep");
    State& s = state();
    const Mem mem = memArg(c, 0);
    SqueezedStep a{};
    a.G = static_cast<int>(c.int64(3, "G", 1));
    a.d = static_cast<int>(c.int64(4, "headDim", 16));
    if (a.G > 16) throw Error("squeezedStep: at most 16 query heads per kv head");
    if (a.d % 16 || a.d > 256) throw Error("squeezedStep: headDim must be a multiple of 16 and ≤ 256");
    a.scale = c.num(5, "scale");
    a.n = c.int64(6, "n", 0);
    a.groups = c.int64(7, "groups", 0);
    a.alwaysPairs = c.int64(23, "alwaysPairs", 0);
    a.end = c.int64(24, "end", a.n);
    const double take = c.num(25, "take");
    if (take != std::floor(take) || take < -1) throw Error("squeezedStep: take must be an integer ≥ −1");
    a.take = static_cast<int64_t>(take);
    a.tau = c.num(26, "tau");
    a.half = c.int64(27, "half", 0) != 0;
    const int64_t qd = static_cast<int64_t>(a.G) * a.d * 4;
    a.q = mem.at<const float>(c.int64(1, "q"), qd, "q");
    a.out = mem.at<float>(c.int64(2, "out"), qd, "out");
    const int64_t pad = SQ_BLOCK;
    const int64_t gpad = (a.groups + pad - 1) / pad * pad;
    const int64_t bpad = ((a.n + pad - 1) / pad + pad - 1) / pad * pad;
    if (a.groups > 0) {
      a.gStart = mem.at<const int32_t>(c.int64(8, "gStart"), a.groups * 4, "gStart");
      a.gLen = mem.at<const int32_t>(c.int64(9, "gLen"), a.groups * 4, "gLen");
      const int64_t gv = c.int64(10, "gvals");
      a.gvals = gv ? mem.at<const float>(gv, a.groups * a.d * 4, "gvals") : nullptr;
      a.gm8 = mem.at<const int8_t>(c.int64(11, "gm8"), gpad * a.d, "gm8");
      a.gmsum = mem.at<const int32_t>(c.int64(12, "gmsum"), gpad * 4, "gmsum");
      a.gms = mem.at<const float>(c.int64(13, "gms"), gpad * 4, "gms");
    }
    if (a.n > 0) {
      a.bm8 = mem.at<const int8_t>(c.int64(14, "bm8"), bpad * a.d, "bm8");
      a.bmsum = mem.at<const int32_t>(c.int64(15, "bmsum"), bpad * 4, "bmsum");
      a.bms = mem.at<const float>(c.int64(16, "bms"), bpad * 4, "bms");
      a.bh8 = mem.at<const int8_t>(c.int64(17, "bh8"), bpad * a.d, "bh8");
      a.bhsum = mem.at<const int32_t>(c.int64(18, "bhsum"), bpad * 4, "bhsum");
      a.bhs = mem.at<const float>(c.int64(19, "bhs"), bpad * 4, "bhs");
    }
    const int64_t nb = (a.n + pad - 1) / pad;
    a.bCount = mem.at<const int32_t>(c.int64(28, "bCount"), nb * 4, "bCount");
    a.bFirst = mem.at<const int32_t>(c.int64(29, "bFirst"), nb * 4, "bFirst");
    for (int64_t b = 0; b < nb; b++)
      if (a.bCount[b] < 0 || a.bCount[b] > pad || a.bFirst[b] < 0 || a.bFirst[b] > a.groups)
        throw Error("squeezedStep: a block's count or first group is out of range");
    // rows read: kept lanes (< n) and live tokens (< end)
    const int64_t rows = std::max(a.end, a.n);
    const int64_t eb = a.half ? 2 : 4;
    a.K = mem.at<const void>(c.int64(20, "K"), rows * a.d * eb, "K");
    a.V = mem.at<const void>(c.int64(21, "V"), rows * a.d * eb, "V");
    const int64_t al = c.int64(22, "always");
    a.always = al ? mem.at<const int32_t>(al, a.alwaysPairs * 8, "always") : nullptr;
    if (!a.always) a.alwaysPairs = 0;
    for (int64_t g = 0, at = 0; g < a.groups; g++) {
      if (a.gLen[g] < 0 || a.gStart[g] < at || a.gStart[g] + static_cast<int64_t>(a.gLen[g]) > a.n)
        throw Error("squeezedStep: groups must be ascending, disjoint runs inside [0, n)");
      at = a.gStart[g] + a.gLen[g];
    }
    for (int64_t p = 0; p < a.alwaysPairs; p++)
      if (a.always[2 * p] < 0 || a.always[2 * p] > a.always[2 * p + 1] || a.always[2 * p + 1] > a.n)
        throw Error("squeezedStep: an always-attended range is outside [0, n)");
    std::lock_guard<std::mutex> lock(s.op);
    napi_value out;
    const bool vnni = std::string(s.level->name) == "avx512vnni";
    napi_create_double(env, static_cast<double>(vnni ? vnni::squeezedStep(a) : avx2::squeezedStep(a)), &out);
    return out;
  });
}

}  // namespace kv
