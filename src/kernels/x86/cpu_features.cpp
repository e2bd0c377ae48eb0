#include "kernels/x86/cpu_features.h"

namespace dsv3::kernels::x86 {

// __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0), so "avx512f"
// is false under a kernel that does not enable AVX-512 state.
std::string missing_feature(const std::string& variant) {
  __builtin_cpu_init();
  if (variant == "avx2") {
    if (!__builtin_cpu_supports("avx2")) return "avx2";
    if (!__builtin_cpu_supports("fma")) return "fma";
    if (!__builtin_cpu_supports("f16c")) return "f16c";
    return "";
  }
  if (variant == "avx512") {
    if (!__builtin_cpu_supports("avx512f")) return "avx512f";
    if (!__builtin_cpu_supports("avx512bw")) return "avx512bw";
    if (!__builtin_cpu_supports("avx512vl")) return "avx512vl";
    if (!__builtin_cpu_supports("avx512dq")) return "avx512dq";
    if (!__builtin_cpu_supports("avx512bf16")) return "avx512bf16";
    if (!__builtin_cpu_supports("avx512vbmi")) return "avx512vbmi";
    return "";
  }
  return "";
}

}  // namespace dsv3::kernels::x86
