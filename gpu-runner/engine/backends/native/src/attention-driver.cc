// attention(mem, q, k, v, out, lse, nq, H, Hkv, d, scale, qStride, kvHeadStride, kvPosStride, qpos0, nk[, kvType,
// ks, vs, scaleHeadStride])
// attentionSpans(mem, q, out, H, d, scale, qStride, spans[, kvType]): several spans (sequences of one step, each
// its own rows of q/out and its own K/V and key count) in one call — a decode batch's attention.
// kvType (the cache's element type; strides in elements either way): 0 f32, 1 IEEE halves (an f16 KV
// cache), 2 int8 codes with an f32 scale per (kv head, position) at ks / vs (byte offsets), scaleHeadStride
// floats between kv heads (an int8 KV cache; spans then carry the three as fields 9–11).
// One driver for both: the (query, head) rows of each span's kv heads are split into units of up to
// attnRowsMax rows (GQA: a unit's rows share K/V tiles), the units of every span together over the
// pool. Enough units (prefill, or a batch of decode spans): each attends all its keys and normalises
// in place; units are claimed heaviest first (the causal mask gives later queries more keys). Few units
// (one decode span): every unit's keys are also split into chunks run in parallel, then merged by
// log-sum-exp.
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

/** One work unit: rows [r0, r0 + R) of kv head g of span `span`, keys [k0, k1). */
struct Unit {
  int span, g, r0, R, k0, k1;
  /** partial slot of a key chunk (merged after the run); −1: the thread's slot, finished in place */
  int slot;
  /** keys × rows it attends (for the heaviest-first order) */
  int64_t cost;
};

/** Runs every span's attention (all share H, Hkv, d) over the pool. */
void runAttention(State& s, const std::vector<Attention>& spans) {
  const int RMAX = s.level->attnRowsMax();
  const int threads = s.pool.threads();
  const int G = spans[0].H / spans[0].Hkv;
  int rowUnits = 0;
  int64_t work = 0;
  for (const Attention& a : spans) {
    rowUnits += a.Hkv * ((a.nq * G + RMAX - 1) / RMAX);
    work += static_cast<int64_t>(a.nq) * a.H * a.d * std::max(1, a.nk);
  }
  std::vector<Unit> units;
  int chunked = 0;  // partial slots of split spans
  for (int si = 0; si < static_cast<int>(spans.size()); si++) {
    const Attention& a = spans[si];
    const int rowsPerHead = a.nq * G;
    const int rowChunks = (rowsPerHead + RMAX - 1) / RMAX;
    int kchunks = 1;
    if (rowUnits < 2 * threads && a.nk >= 512)
      kchunks = std::min((a.nk + 255) / 256, (8 * threads + rowUnits - 1) / rowUnits);
    const int kstep = ((a.nk + kchunks - 1) / kchunks + 63) / 64 * 64;
    kchunks = std::max(1, (a.nk + kstep - 1) / kstep);
    for (int rc = 0; rc < rowChunks; rc++)
      for (int g = 0; g < a.Hkv; g++) {
        const int r0 = rc * RMAX, R = std::min(RMAX, rowsPerHead - r0);
        // the unit's last query sees keys up to qpos0 + its index (all keys without a mask)
        const int last = (r0 + R - 1) / G;
        const int lim = a.qpos0 >= 0 ? std::min(a.nk, a.qpos0 + last + 1) : a.nk;
        for (int kc = 0; kc < kchunks; kc++) {
          const int k0 = kc * kstep, k1 = kchunks == 1 ? a.nk : std::min(a.nk, (kc + 1) * kstep);
          const int64_t keys = std::max(0, std::min(lim, k1) - k0);
          units.push_back({si, g, r0, R, k0, k1, kchunks == 1 ? -1 : chunked++, keys * R});
        }
      }
  }
  std::stable_sort(units.begin(), units.end(), [](const Unit& x, const Unit& y) { return x.cost > y.cost; });
  const int64_t per = static_cast<int64_t>(RMAX) * spans[0].d + 2 * RMAX;  // floats of one partial
  const int slots = threads + chunked;
  if (s.partials.size() < static_cast<size_t>(per * slots)) s.partials.resize(per * slots);
  float* base = s.partials.data();
  auto partial = [&](int slot) {
    float* p = base + per * slot;
    return AttnPartial{p, p + static_cast<int64_t>(RMAX) * spans[0].d, p + static_cast<int64_t>(RMAX) * spans[0].d + RMAX};
  };
  const int n = static_cast<int>(units.size());
  auto runUnit = [&](const Unit& u, int tid) {
    const Attention& a = spans[u.span];
    if (u.slot < 0) {
      const AttnPartial pt = partial(tid);
      s.level->attendUnit(a, u.g, u.r0, u.R, u.k0, u.k1, pt);
      finish(a, u.g, u.r0, u.R, pt.o, pt.m, pt.l);
    } else {
      s.level->attendUnit(a, u.g, u.r0, u.R, u.k0, u.k1, partial(threads + u.slot));
    }
  };
  if (threads == 1 || work < (1 << 17)) {
    for (const Unit& u : units) runUnit(u, 0);
  } else {
    s.pool.run(n, [&](int p, int tid) { runUnit(units[p], tid); });
  }
  if (chunked == 0) return;
  // merge each split row unit's key chunks (its units sit together in `units` only before the sort:
  // gather them by (span, g, r0))
  std::vector<const Unit*> split;
  for (const Unit& u : units)
    if (u.slot >= 0) split.push_back(&u);
  std::stable_sort(split.begin(), split.end(), [](const Unit* x, const Unit* y) {
    if (x->span != y->span) return x->span < y->span;
    if (x->g != y->g) return x->g < y->g;
    if (x->r0 != y->r0) return x->r0 < y->r0;
    return x->k0 < y->k0;
  });
  const int d = spans[0].d;
  std::vector<float> o(static_cast<size_t>(RMAX) * d), m(RMAX), l(RMAX);
  for (size_t i = 0; i < split.size();) {
    size_t j = i;
    while (j < split.size() && split[j]->span == split[i]->span && split[j]->g == split[i]->g &&
           split[j]->r0 == split[i]->r0)
      j++;
    const Unit& u = *split[i];
    for (int r = 0; r < u.R; r++) {
      float mx = -1e30f;
      for (size_t c = i; c < j; c++) mx = std::max(mx, partial(threads + split[c]->slot).m[r]);
      float lsum = 0;
      std::fill(o.begin() + r * d, o.begin() + (r + 1) * d, 0.0f);
      for (size_t c = i; c < j; c++) {
        const AttnPartial pt = partial(threads + split[c]->slot);
        if (pt.l[r] <= 0) continue;
        const float w = std::exp(pt.m[r] - mx);
        lsum += pt.l[r] * w;
        for (int dd = 0; dd < d; dd++) o[r * d + dd] += pt.o[r * d + dd] * w;
      }
      m[r] = mx;
      l[r] = lsum;
    }
    finish(spans[u.span], u.g, u.r0, u.R, o.data(), m.data(), l.data());
    i = j;
  }
}

void checkHeads(const Attention& a) {
  if (a.H % a.Hkv) throw Error("attention: heads must be a multiple of kvHeads");
  if (a.d % 16 || a.d > 256) throw Error("attention: headDim must be a multiple of 16 and ≤ 256");
}

/** bytes of K (or V) the span reads from its base offset (f32, half or int8 elements) */
int64_t kvBytes(const Attention& a) {
  const int64_t eb = a.half ? 2 : a.q8 ? 1 : 4;
  return a.nk == 0 ? 0 : ((a.Hkv - 1) * a.kvHeadStride + (a.nk - 1) * a.kvPosStride + a.d) * eb;
}

/** bytes of the int8 scales (ks or vs) the span reads */
int64_t scaleBytes(const Attention& a) {
  return a.nk == 0 ? 0 : ((a.Hkv - 1) * a.scaleHeadStride + a.nk) * 4;
}

/** the optional trailing kvType (0 f32, 1 f16, 2 int8) at argument i → a.half / a.q8 */
void kvTypeArg(const Call& c, size_t i, Attention& a) {
  const int64_t t = c.argc > i ? c.int64(i, "kvType") : 0;
  if (t < 0 || t > 2) throw Error("attention: kvType must be 0 (f32), 1 (f16) or 2 (int8)");
  a.half = t == 1;
  a.q8 = t == 2;
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
    checkHeads(a);
    a.scale = static_cast<float>(c.num(10, "scale"));
    a.qStride = c.int64(11, "qStride", a.H * a.d);
    a.kvHeadStride = c.int64(12, "kvHeadStride", 0);
    a.kvPosStride = c.int64(13, "kvPosStride", a.d);
    a.qpos0 = static_cast<int32_t>(c.int64(14, "qpos0", -1));
    a.nk = static_cast<int32_t>(c.int64(15, "nk", 0));
    kvTypeArg(c, 16, a);
    if (a.q8) {
      a.scaleHeadStride = c.int64(19, "scaleHeadStride", 0);
      a.ks = mem.at<const float>(c.int64(17, "ks"), scaleBytes(a), "ks");
      a.vs = mem.at<const float>(c.int64(18, "vs"), scaleBytes(a), "vs");
    }
    const int64_t qBytes = ((a.nq - 1) * a.qStride + a.H * a.d) * 4;
    a.q = mem.at<const float>(c.int64(1, "q"), qBytes, "q");
    a.k = mem.at<const float>(c.int64(2, "k"), kvBytes(a), "k");
    a.v = mem.at<const float>(c.int64(3, "v"), kvBytes(a), "v");
    a.out = mem.at<float>(c.int64(4, "out"), qBytes, "out");
    const int64_t lse = c.int64(5, "lse");
    a.lse = lse ? mem.at<float>(lse, static_cast<int64_t>(a.nq) * a.H * 4, "lse") : nullptr;
    std::lock_guard<std::mutex> lock(s.op);
    runAttention(s, {a});
    return undefinedValue(env);
  });
}

// spans: Float64Array of 9 per span: k, v (byte offsets), kvHeads, kvHeadStride, kvPosStride (elements),
// row (first q/out row), nq, qpos0, nk; int8 caches 12: then ks, vs (byte offsets), scaleHeadStride (floats)
napi_value attentionSpansFn(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Call c(env, info, 8, "attentionSpans");
    State& s = state();
    const Mem mem = memArg(c, 0);
    Attention base{};
    base.H = static_cast<int32_t>(c.int64(3, "heads", 1));
    base.d = static_cast<int32_t>(c.int64(4, "headDim", 16));
    base.scale = static_cast<float>(c.num(5, "scale"));
    base.qStride = c.int64(6, "qStride", base.H * base.d);
    kvTypeArg(c, 8, base);
    const int SPAN_FIELDS = base.q8 ? 12 : 9;
    const Mem desc = memArg(c, 7);
    if (desc.bytes % (SPAN_FIELDS * 8))
      throw Error("attentionSpans: spans must hold " + std::to_string(SPAN_FIELDS) + " numbers per span");
    const int64_t count = desc.bytes / (SPAN_FIELDS * 8);
    if (count == 0) return undefinedValue(env);
    const int64_t q0 = c.int64(1, "q"), out0 = c.int64(2, "out");
    std::vector<Attention> spans;
    spans.reserve(count);
    for (int64_t i = 0; i < count; i++) {
      double f[12];
      std::memcpy(f, desc.data + i * SPAN_FIELDS * 8, SPAN_FIELDS * 8);
      auto field = [&](int j, const char* what, int64_t lo) {
        const double v = f[j];
        if (!integerIn(v, lo))
          throw Error("attentionSpans: span " + std::to_string(i) + " " + what + " must be an integer ≥ " +
                      std::to_string(lo));
        return static_cast<int64_t>(v);
      };
      Attention a = base;
      a.Hkv = static_cast<int32_t>(field(2, "kvHeads", 1));
      checkHeads(a);
      if (i > 0 && a.Hkv != spans[0].Hkv) throw Error("attentionSpans: every span must have the same kvHeads");
      a.kvHeadStride = field(3, "kvHeadStride", 0);
      a.kvPosStride = field(4, "kvPosStride", a.d);
      const int64_t row = field(5, "row", 0);
      a.nq = static_cast<int32_t>(field(6, "nq", 1));
      a.qpos0 = static_cast<int32_t>(field(7, "qpos0", -1));
      a.nk = static_cast<int32_t>(field(8, "nk", 0));
      const int64_t off = row * a.qStride * 4;
      const int64_t qBytes = ((a.nq - 1) * a.qStride + a.H * a.d) * 4;
      a.q = mem.at<const float>(q0 + off, qBytes, "q");
      a.out = mem.at<float>(out0 + off, qBytes, "out");
      a.k = mem.at<const float>(field(0, "k", 0), kvBytes(a), "k");
      a.v = mem.at<const float>(field(1, "v", 0), kvBytes(a), "v");
      if (a.q8) {
        a.scaleHeadStride = field(11, "scaleHeadStride", 0);
        a.ks = mem.at<const float>(field(9, "ks", 0), scaleBytes(a), "ks");
        a.vs = mem.at<const float>(field(10, "vs", 0), scaleBytes(a), "vs");
      }
      a.lse = nullptr;
      spans.push_back(a);
    }
    std::lock_guard<std::mutex> lock(s.op);
    runAttention(s, spans);
    return undefinedValue(env);
  });
}

}  // namespace kv
