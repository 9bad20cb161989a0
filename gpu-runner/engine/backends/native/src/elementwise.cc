// Light elementwise ops a step runs between the matmuls, compiled once per ISA level (simd.h): SwiGLU
// y = gate · sigmoid(gate) · up, the argmax of logit rows, RMSNorm, rotate-half RoPE (angles' cos/sin
// come from the binding, light-driver.cc) and the residual add.
#include <algorithm>
#include <cmath>
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

void rmsnorm(const float* x, const float* w, float* y, int64_t D, float eps, int64_t m0, int64_t m1) {
  constexpr int W = V::W;
  for (int64_t m = m0; m < m1; m++) {
    const float* xr = x + m * D;
    float* yr = y + m * D;
    V::v acc = V::zero();
    int64_t k = 0;
    for (; k + W <= D; k += W) {
      const V::v v = V::load(xr + k);
      acc = V::fma(v, v, acc);
    }
    if (k < D) {
      const V::v v = V::loadn(xr + k, static_cast<int>(D - k));
      acc = V::fma(v, v, acc);
    }
    const float inv = 1.0f / std::sqrt(V::hsum(acc) / static_cast<float>(D) + eps);
    const V::v iv = V::set1(inv);
    k = 0;
    for (; k + W <= D; k += W) V::store(yr + k, V::mul(V::mul(V::load(xr + k), iv), V::load(w + k)));
    if (k < D) {
      const int n = static_cast<int>(D - k);
      V::storen(yr + k, V::mul(V::mul(V::loadn(xr + k, n), iv), V::loadn(w + k, n)), n);
    }
  }
}

void rope(const float* x, float* y, const float* cs, int64_t width, int64_t headDim, int64_t m0, int64_t m1) {
  constexpr int W = V::W;
  const int64_t half = headDim / 2;
  for (int64_t m = m0; m < m1; m++) {
    const float* cr = cs + m * 2 * half;  // cos [half], then sin [half]
    const float* sr = cr + half;
    for (int64_t h = 0; h < width; h += headDim) {
      const float* xa = x + m * width + h;
      const float* xb = xa + half;
      float* ya = y + m * width + h;
      float* yb = ya + half;
      for (int64_t i = 0; i < half; i += W) {
        const int n = static_cast<int>(std::min<int64_t>(W, half - i));
        const V::v u = V::loadn(xa + i, n), v = V::loadn(xb + i, n);
        const V::v c = V::loadn(cr + i, n), s = V::loadn(sr + i, n);
        V::storen(ya + i, V::sub(V::mul(u, c), V::mul(v, s)), n);
        V::storen(yb + i, V::add(V::mul(v, c), V::mul(u, s)), n);
      }
    }
  }
}

void add(const float* a, const float* b, float* y, int64_t i0, int64_t i1) {
  constexpr int W = V::W;
  int64_t i = i0;
  for (; i + W <= i1; i += W) V::store(y + i, V::add(V::load(a + i), V::load(b + i)));
  if (i < i1) {
    const int n = static_cast<int>(i1 - i);
    V::storen(y + i, V::add(V::loadn(a + i, n), V::loadn(b + i, n)), n);
  }
}

}  // namespace KV_NS
}  // namespace kv
