// cpuid / xgetbv checks (cpu.h). AVX-512 needs F, BW, VL, DQ and the OS saving opmask + ZMM state;
// AVX2 needs AVX2, FMA, F16C and the OS saving YMM state.
#include "cpu.h"
#include <cpuid.h>
#include <cstdint>

namespace kv {

namespace {
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
}  // namespace

std::vector<std::string> supportedLevels() {
  std::vector<std::string> out;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return out;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29), avx = c & (1u << 28);
  if (!osxsave || !avx) return out;
  const uint64_t xcr0 = xgetbv0();
  const bool ymmOs = (xcr0 & 0x6) == 0x6;
  const bool zmmOs = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return out;
  const bool avx2 = b & (1u << 5);
  const bool f512 = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
  const bool vnni = c & (1u << 11);
  const bool base = ymmOs && avx2 && fma && f16c;
  if (!base) return out;
  if (zmmOs && f512 && dq && bw && vl) {
    if (vnni) out.push_back("avx512vnni");
    out.push_back("avx512");
  }
  out.push_back("avx2");
  return out;
}

}  // namespace kv
