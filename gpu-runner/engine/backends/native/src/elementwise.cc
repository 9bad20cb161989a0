// Light elementwise ops the decode step runs between the matmuls, compiled once per ISA level
// (simd.h): SwiGLU y = gate · sigmoid(gate) · up.
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

}  // namespace KV_NS
}  // namespace kv
