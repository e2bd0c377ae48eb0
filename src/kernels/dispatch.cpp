// Chooses the kernel variant once, from what the CPU reports or from DSV3_KERNELS.
#include <cstdlib>

#include "core/error.h"
#include "kernels/variant.h"
#if DSV3_KERNELS_X86  // set by CMake for x86-64 builds, where the SIMD variants are compiled
#include "kernels/x86/cpu_features.h"
#endif

namespace dsv3::kernels {

void unsupported_dtype(DType dtype) { fail("kernels: unsupported weight dtype ", dtype_name(dtype)); }

const std::vector<const Variant*>& compiled_variants() {
#if DSV3_KERNELS_X86
  static const std::vector<const Variant*> all{&scalar::variant(), &avx2::variant(), &avx512::variant()};
#else
  static const std::vector<const Variant*> all{&scalar::variant()};
#endif
  return all;
}

std::string missing_cpu_feature(const Variant& v) {
#if DSV3_KERNELS_X86
  return x86::missing_feature(v.name);
#else
  return "";
#endif
}

namespace {
const Variant& choose() {
  const auto& all = compiled_variants();
  if (const char* forced = std::getenv("DSV3_KERNELS"); forced != nullptr && *forced != '\0') {
    std::string names;
    for (const Variant* v : all) {
      names += names.empty() ? v->name : std::string(", ") + v->name;
      if (v->name != std::string(forced)) continue;
      const std::string missing = missing_cpu_feature(*v);
      DSV3_CHECK(missing.empty(), "DSV3_KERNELS=", forced, ": this CPU lacks ", missing);
      return *v;
    }
    fail("DSV3_KERNELS=", forced, ": unknown kernel variant (this build has: ", names, ")");
  }
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (missing_cpu_feature(**it).empty()) return **it;
  return scalar::variant();
}
}  // namespace

const Variant& active() {
  static const Variant& v = choose();
  return v;
}

}  // namespace dsv3::kernels
