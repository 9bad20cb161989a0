// squeezedStep(mem, q, out, G, d, scale, k8, perm, ks, grp, n, gvals, groups, K, V, always, alwaysPairs,
// end, take, tau, gStart, gLen, gm8, gmsum, gms, gs8, gssum, gss, want, kvType, cw, quads, gq, gqs, Ks, Vs) → keys
// kept (the AVX-512 VNNI kernel at that level, else AVX2). Byte offsets into mem (0 = none for gvals / always);
// every range is checked before the kernel (squeezed.cc) runs. K, V: the layer's kv head at position 0, rows of
// d values, kvType 0 f32, 1 IEEE halves, 2 int8 codes with an f32 scale per row at Ks / Vs (that kv head's [pos]).
#include <algorithm>
#include "binding.h"
#include "squeezed.h"

namespace kv {

napi_value squeezedStepFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 36, "squeezedStep");
    State& s = state();
    const Mem mem = memArg(c, 0);
    SqueezedStep a{};
    a.G = static_cast<int>(c.int64(3, "G", 1));
    a.d = static_cast<int>(c.int64(4, "headDim", 16));
    if (a.G > 16) throw Error("squeezedStep: at most 16 query heads per kv head");
    if (a.d % 16 || a.d > 256) throw Error("squeezedStep: headDim must be a multiple of 16 and ≤ 256");
    a.scale = c.num(5, "scale");
    a.n = c.int64(10, "n", 0);
    a.groups = c.int64(12, "groups", 0);
    a.alwaysPairs = c.int64(16, "alwaysPairs", 0);
    a.end = c.int64(17, "end", a.n);
    const double take = c.num(18, "take");
    if (take != std::floor(take) || take < -1) throw Error("squeezedStep: take must be an integer ≥ −1");
    a.take = static_cast<int64_t>(take);
    a.tau = c.num(19, "tau");
    const int64_t qd = static_cast<int64_t>(a.G) * a.d * 4;
    const int64_t npad = (a.n + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK;
    a.q = mem.at<const float>(c.int64(1, "q"), qd, "q");
    a.out = mem.at<float>(c.int64(2, "out"), qd, "out");
    a.k8 = mem.at<const uint8_t>(c.int64(6, "k8"), npad * a.d, "k8");
    a.perm = mem.at<const int32_t>(c.int64(7, "perm"), a.d * 4, "perm");
    a.cw = mem.at<const float>(c.int64(30, "cw"), a.d * 4, "cw");
    a.quads = static_cast<int>(std::min<int64_t>(c.int64(31, "quads", 1), a.d / 4));
    {
      bool seen[256] = {};
      for (int p = 0; p < a.d; p++) {
        if (a.perm[p] < 0 || a.perm[p] >= a.d || seen[a.perm[p]])
          throw Error("squeezedStep: perm must be a permutation of [0, headDim)");
        seen[a.perm[p]] = true;
      }
    }
    a.ks = mem.at<const float>(c.int64(8, "ks"), npad * 4, "ks");
    a.grp = mem.at<const int32_t>(c.int64(9, "grp"), a.n * 4, "grp");
    const int64_t gv = c.int64(11, "gvals");
    a.gvals = gv ? mem.at<const uint16_t>(gv, a.groups * a.d * 2, "gvals") : nullptr;
    const int64_t type = c.int64(29, "kvType", 0);
    if (type < 0 || type > 2) throw Error("squeezedStep: kvType must be 0 (f32), 1 (f16) or 2 (int8)");
    a.half = type == 1;
    a.q8 = type == 2;
    const int64_t eb = type == 2 ? 1 : type == 1 ? 2 : 4;
    if (a.q8) {
      a.Ks = mem.at<const float>(c.int64(34, "Ks"), a.end * 4, "Ks");
      a.Vs = mem.at<const float>(c.int64(35, "Vs"), a.end * 4, "Vs");
    }
    a.K = mem.at<const void>(c.int64(13, "K"), a.end * a.d * eb, "K");
    a.V = mem.at<const void>(c.int64(14, "V"), a.end * a.d * eb, "V");
    const int64_t al = c.int64(15, "always");
    a.always = al ? mem.at<const int32_t>(al, a.alwaysPairs * 8, "always") : nullptr;
    if (!a.always) a.alwaysPairs = 0;
    a.gStart = mem.at<const int32_t>(c.int64(20, "gStart"), a.groups * 4, "gStart");
    a.gLen = mem.at<const int32_t>(c.int64(21, "gLen"), a.groups * 4, "gLen");
    // the group tables (0 = none: no prefilter): int8 rows in the keys' layout, groups padded to 16
    const int64_t gpad = (a.groups + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK;
    const int64_t tab[6] = {c.int64(22, "gm8"), c.int64(23, "gmsum"), c.int64(24, "gms"),
                            c.int64(25, "gs8"), c.int64(26, "gssum"), c.int64(27, "gss")};
    if (tab[0] && tab[1] && tab[2] && tab[3] && tab[4] && tab[5] && a.groups > 0) {
      a.gm8 = mem.at<const int8_t>(tab[0], gpad * a.d, "gm8");
      a.gmsum = mem.at<const int32_t>(tab[1], gpad * 4, "gmsum");
      a.gms = mem.at<const float>(tab[2], gpad * 4, "gms");
      a.gs8 = mem.at<const int8_t>(tab[3], gpad * a.d, "gs8");
      a.gssum = mem.at<const int32_t>(tab[4], gpad * 4, "gssum");
      a.gss = mem.at<const float>(tab[5], gpad * 4, "gss");
    }
    a.want = c.int64(28, "want", -1);
    const int64_t gq = c.int64(32, "gq"), gqs = c.int64(33, "gqs");
    if (gq && gqs && a.groups > 0) {
      a.gq = mem.at<const uint8_t>(gq, gpad * a.d, "gq");
      a.gqs = mem.at<const float>(gqs, gpad * 4, "gqs");
    }
    if (a.gvals && !a.gq)
      throw Error("squeezedStep: the left-out share (gvals) needs the groups' mean keys (gq, gqs)");
    for (int64_t g = 0, at = 0; g < a.groups; g++) {
      if (a.gLen[g] < 0 || a.gStart[g] < at || a.gStart[g] + static_cast<int64_t>(a.gLen[g]) > a.n)
        throw Error("squeezedStep: groups must be ascending, disjoint runs inside [0, n)");
      at = a.gStart[g] + a.gLen[g];
    }
    int32_t top = -1;  // the largest group of a slot: a max reduction, which vectorises (an early exit does not)
    for (int64_t j = 0; j < a.n; j++) top = std::max(top, a.grp[j]);
    if (top >= a.groups) throw Error("squeezedStep: a slot's group is outside [−1, groups)");
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
