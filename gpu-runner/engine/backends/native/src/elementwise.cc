// Light elementwise ops the decode step runs between the matmuls, compiled once per ISA level
// (simd.h): SwiGLU y = gate · sigmoid(gate) · up, and the argmax of logit rows.
#include "kernels.h"
#include "simd.h"

namespace kv {
namespace KV_NS {

void swiglu(const float* gate, const float* up, float* y, int64_t i0, int64_t i1) {
  constexpr int W = V::W;
  const V::v one = V::set1(1.0f);
  const V::v zero = V::zero();
  int64_t i = i0;
  for (; i + W <= i1; i += W) {
    const V::v g = V::load(gate + i);
    const V::v sig = V::div(one, V::add(one, vexp(V::sub(zero, g))));
    V::store(y + i, V::mul(V::mul(g, sig), V::load(up + i)));
  }
  if (i < i1) {
    const int n = static_cast<int>(i1 - i);
    const V::v g = V::loadn(gate + i, n);
    const V::v sig = V::div(one, V::add(one, vexp(V::sub(zero, g))));
    V::storen(y + i, V::mul(V::mul(g, sig), V::loadn(up + i, n)), n);
  }
}

void argmax(const float* x, int64_t N, int32_t* out, int64_t m0, int64_t m1) {
  constexpr int W = V::W;
  for (int64_t m = m0; m < m1; m++) {
    const float* xr = x + m * N;
    // per lane: the best value and its index (strict >: a lane keeps its first occurrence); indices are
    // exact as floats below 2^24 (the binding checks N)
    V::v bv = V::set1(-INFINITY), bi = V::zero(), idx = V::iota();
    const V::v step = V::set1(static_cast<float>(W));
    int64_t k = 0;
    for (; k + W <= N; k += W) {
      const V::v v = V::load(xr + k);
      bi = V::selectGt(idx, bi, v, bv);
      bv = V::selectGt(v, bv, v, bv);
      idx = V::add(idx, step);
    }
    alignas(64) float lv[W], li[W];
    V::store(lv, bv);
    V::store(li, bi);
    float best = -INFINITY;
    int64_t at = 0;
    for (int l = 0; l < W; l++) {
      const int64_t j = static_cast<int64_t>(li[l]);
      if (lv[l] > best || (lv[l] == best && j < at)) best = lv[l], at = j;
    }
    for (; k < N; k++)
      if (xr[k] > best) best = xr[k], at = k;
    out[m] = static_cast<int32_t>(at);
  }
}

}  // namespace KV_NS
}  // namespace kv
