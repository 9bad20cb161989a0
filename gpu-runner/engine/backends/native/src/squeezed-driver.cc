// squeezedSteps(mem, steps, kept): a layer's fused squeezed steps (one per row and kv head of a span) in one
// call, run over the pool (one part per step; each pool thread has its own scratch, squeezed.cc), the AVX-512
// VNNI kernel at that level, else AVX2.
// steps: Float64Array [steps][STEP_FIELDS], the fields in the order of `Field` below (kernels.ts STEP_FIELDS
// packs them in that order); kept: Int32Array [steps] ← the keys each step kept (not counting
// always-attended ranges). Byte offsets into mem (0 = none for gvals / always / the group tables); every
// step's ranges are checked before any kernel runs, and the steps' out rows must not overlap (each step
// writes only its own), so the result is the same as running them one by one. K, V: the layer's kv head at
// position 0, rows of d values, kvType 0 f32, 1 IEEE halves, 2 int8 codes with an f32 scale per row at
// Ks / Vs (that kv head's [pos]).
#include <algorithm>
#include "binding.h"
#include "squeezed.h"

namespace kv {

namespace {

/** One step's record: kernels.ts NativeSqueezedStep's fields in this order. */
enum Field {
  F_Q, F_OUT, F_G, F_HEAD_DIM, F_SCALE, F_K8, F_PERM, F_CW, F_KS, F_GRP, F_N, F_GVALS, F_GROUPS, F_K, F_V,
  F_ALWAYS, F_ALWAYS_PAIRS, F_END, F_TAKE, F_TAU, F_G_START, F_G_LEN, F_GM8, F_GMSUM, F_GMS, F_GS8, F_GSSUM,
  F_GSS, F_WANT, F_KV_TYPE, F_KS_ROWS, F_VS_ROWS, F_QUADS, F_GQ, F_GQS,
  STEP_FIELDS
};

/** Most steps in one call (the pool's part counter holds < 2^20). */
constexpr int64_t MAX_STEPS = 1 << 16;

/** The data and element count of argument i, which must be a typed array of `type`. */
template <typename T>
std::pair<T*, int64_t> typedArg(const Call& c, size_t i, napi_typedarray_type type, const char* what) {
  bool is = false;
  napi_typedarray_type t;
  size_t length = 0, offset;
  void* data = nullptr;
  napi_value ab;
  if (napi_is_typedarray(c.env, c.argv[i], &is) != napi_ok || !is ||
      napi_get_typedarray_info(c.env, c.argv[i], &t, &length, &data, &ab, &offset) != napi_ok || t != type)
    throw Error(std::string("squeezedSteps: ") + what);
  return {static_cast<T*>(data), static_cast<int64_t>(length)};
}

/**
 * One step's record f [STEP_FIELDS] → its kernel arguments, every field, offset and range checked (the
 * same checks whichever path runs it: the kernel trusts them). Throws Error naming the field.
 */
SqueezedStep parseStep(const Mem& mem, const double* f) {
  auto num = [&](int i, const char* what) { return finiteArg(f[i], what); };
  auto int64 = [&](int i, const char* what, int64_t lo = 0) { return integerArg(f[i], what, lo); };
  SqueezedStep a{};
  a.G = static_cast<int>(int64(F_G, "G", 1));
  a.d = static_cast<int>(int64(F_HEAD_DIM, "headDim", 16));
  if (a.G > 16) throw Error("at most 16 query heads per kv head");
  if (a.d % 16 || a.d > 256) throw Error("headDim must be a multiple of 16 and ≤ 256");
  a.scale = num(F_SCALE, "scale");
  a.n = int64(F_N, "n", 0);
  a.groups = int64(F_GROUPS, "groups", 0);
  a.alwaysPairs = int64(F_ALWAYS_PAIRS, "alwaysPairs", 0);
  a.end = int64(F_END, "end", a.n);
  const double take = num(F_TAKE, "take");
  if (take != std::floor(take) || take < -1) throw Error("take must be an integer ≥ −1");
  a.take = static_cast<int64_t>(take);
  a.tau = num(F_TAU, "tau");
  const int64_t qd = static_cast<int64_t>(a.G) * a.d * 4;
  const int64_t npad = (a.n + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK;
  a.q = mem.at<const float>(int64(F_Q, "q"), qd, "q");
  a.out = mem.at<float>(int64(F_OUT, "out"), qd, "out");
  a.k8 = mem.at<const uint8_t>(int64(F_K8, "k8"), npad * a.d, "k8");
  a.perm = mem.at<const int32_t>(int64(F_PERM, "perm"), a.d * 4, "perm");
  a.cw = mem.at<const float>(int64(F_CW, "cw"), a.d * 4, "cw");
  a.quads = static_cast<int>(std::min<int64_t>(int64(F_QUADS, "quads", 1), a.d / 4));
  {
    bool seen[256] = {};
    for (int p = 0; p < a.d; p++) {
      if (a.perm[p] < 0 || a.perm[p] >= a.d || seen[a.perm[p]])
        throw Error("perm must be a permutation of [0, headDim)");
      seen[a.perm[p]] = true;
    }
  }
  a.ks = mem.at<const float>(int64(F_KS, "ks"), npad * 4, "ks");
  a.grp = mem.at<const int32_t>(int64(F_GRP, "grp"), a.n * 4, "grp");
  const int64_t gv = int64(F_GVALS, "gvals");
  a.gvals = gv ? mem.at<const uint16_t>(gv, a.groups * a.d * 2, "gvals") : nullptr;
  const int64_t type = int64(F_KV_TYPE, "kvType", 0);
  if (type > 2) throw Error("kvType must be 0 (f32), 1 (f16) or 2 (int8)");
  a.half = type == 1;
  a.q8 = type == 2;
  const int64_t eb = type == 2 ? 1 : type == 1 ? 2 : 4;
  if (a.q8) {
    a.Ks = mem.at<const float>(int64(F_KS_ROWS, "Ks"), a.end * 4, "Ks");
    a.Vs = mem.at<const float>(int64(F_VS_ROWS, "Vs"), a.end * 4, "Vs");
  }
  a.K = mem.at<const void>(int64(F_K, "K"), a.end * a.d * eb, "K");
  a.V = mem.at<const void>(int64(F_V, "V"), a.end * a.d * eb, "V");
  const int64_t al = int64(F_ALWAYS, "always");
  a.always = al ? mem.at<const int32_t>(al, a.alwaysPairs * 8, "always") : nullptr;
  if (!a.always) a.alwaysPairs = 0;
  a.gStart = mem.at<const int32_t>(int64(F_G_START, "gStart"), a.groups * 4, "gStart");
  a.gLen = mem.at<const int32_t>(int64(F_G_LEN, "gLen"), a.groups * 4, "gLen");
  // the group tables (0 = none: no prefilter): int8 rows in the keys' layout, groups padded to 16
  const int64_t gpad = (a.groups + SQ_BLOCK - 1) / SQ_BLOCK * SQ_BLOCK;
  const int64_t tab[6] = {int64(F_GM8, "gm8"), int64(F_GMSUM, "gmsum"), int64(F_GMS, "gms"),
                          int64(F_GS8, "gs8"), int64(F_GSSUM, "gssum"), int64(F_GSS, "gss")};
  if (tab[0] && tab[1] && tab[2] && tab[3] && tab[4] && tab[5] && a.groups > 0) {
    a.gm8 = mem.at<const int8_t>(tab[0], gpad * a.d, "gm8");
    a.gmsum = mem.at<const int32_t>(tab[1], gpad * 4, "gmsum");
    a.gms = mem.at<const float>(tab[2], gpad * 4, "gms");
    a.gs8 = mem.at<const int8_t>(tab[3], gpad * a.d, "gs8");
    a.gssum = mem.at<const int32_t>(tab[4], gpad * 4, "gssum");
    a.gss = mem.at<const float>(tab[5], gpad * 4, "gss");
  }
  a.want = int64(F_WANT, "want", -1);
  const int64_t gq = int64(F_GQ, "gq"), gqs = int64(F_GQS, "gqs");
  if (gq && gqs && a.groups > 0) {
    a.gq = mem.at<const uint8_t>(gq, gpad * a.d, "gq");
    a.gqs = mem.at<const float>(gqs, gpad * 4, "gqs");
  }
  if (a.gvals && !a.gq) throw Error("the left-out share (gvals) needs the groups' mean keys (gq, gqs)");
  for (int64_t g = 0, at = 0; g < a.groups; g++) {
    if (a.gLen[g] < 0 || a.gStart[g] < at || a.gStart[g] + static_cast<int64_t>(a.gLen[g]) > a.n)
      throw Error("groups must be ascending, disjoint runs inside [0, n)");
    at = a.gStart[g] + a.gLen[g];
  }
  int32_t top = -1;  // the largest group of a slot: a max reduction, which vectorises (an early exit does not)
  for (int64_t j = 0; j < a.n; j++) top = std::max(top, a.grp[j]);
  if (top >= a.groups) throw Error("a slot's group is outside [−1, groups)");
  for (int64_t p = 0; p < a.alwaysPairs; p++)
    if (a.always[2 * p] < 0 || a.always[2 * p] > a.always[2 * p + 1] || a.always[2 * p + 1] > a.n)
      throw Error("an always-attended range is outside [0, n)");
  return a;
}

/** Throws unless the steps' out rows ([G][d] floats each) are pairwise disjoint. */
void checkOutsDisjoint(const std::vector<SqueezedStep>& steps) {
  std::vector<std::pair<const float*, const float*>> outs;
  outs.reserve(steps.size());
  for (const SqueezedStep& a : steps) outs.push_back({a.out, a.out + static_cast<int64_t>(a.G) * a.d});
  std::sort(outs.begin(), outs.end());
  for (size_t i = 1; i < outs.size(); i++)
    if (outs[i].first < outs[i - 1].second) throw Error("squeezedSteps: two steps write overlapping out rows");
}

}  // namespace

napi_value squeezedStepsFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 3, "squeezedSteps");
    State& s = state();
    const Mem mem = memArg(c, 0);
    const auto [fields, count] = typedArg<const double>(c, 1, napi_float64_array, "steps must be a Float64Array");
    if (count % STEP_FIELDS)
      throw Error("squeezedSteps: steps must hold " + std::to_string(STEP_FIELDS) + " numbers per step");
    const int64_t jobs = count / STEP_FIELDS;
    if (jobs > MAX_STEPS) throw Error("squeezedSteps: at most " + std::to_string(MAX_STEPS) + " steps per call");
    const auto [kept, keptLen] = typedArg<int32_t>(c, 2, napi_int32_array, "kept must be an Int32Array");
    if (keptLen != jobs) throw Error("squeezedSteps: kept must hold one entry per step");
    std::vector<SqueezedStep> steps;
    steps.reserve(jobs);
    for (int64_t j = 0; j < jobs; j++) {
      try {
        steps.push_back(parseStep(mem, fields + j * STEP_FIELDS));
      } catch (const Error& e) {
        throw Error("squeezedSteps: step " + std::to_string(j) + ": " + e.what());
      }
    }
    checkOutsDisjoint(steps);
    std::lock_guard<std::mutex> lock(s.op);
    const bool vnni = std::string(s.level->name) == "avx512vnni";
    int64_t (*step)(const SqueezedStep&) = vnni ? vnni::squeezedStep : avx2::squeezedStep;
    // the counts land here first: kept may view the memory the steps read
    std::vector<int64_t> keys(jobs);
    s.pool.run(static_cast<int>(jobs), [&](int p, int) { keys[p] = step(steps[p]); });
    for (int64_t j = 0; j < jobs; j++) kept[j] = static_cast<int32_t>(keys[j]);
    return undefinedValue(env);
  });
}

}  // namespace kv
