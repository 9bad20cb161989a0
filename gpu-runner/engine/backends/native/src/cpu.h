// Which ISA levels this CPU and OS support (cpuid + xgetbv), best first.
#pragma once
#include <string>
#include <vector>

namespace kv {
/** subset of {"avx512vnni", "avx512", "avx2"}, best first; empty when not even AVX2 + FMA + F16C */
std::vector<std::string> supportedLevels();
}  // namespace kv
