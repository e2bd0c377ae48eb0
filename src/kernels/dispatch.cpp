// Chooses the kernel variant once, from what the CPU reports or from DSV3_KERNELS.
#include <cstdlib>

#include "core/error.h"
#include "kernels/variant.h"
#if DSV3_KERNELS_X86  // set by CMake for x86-64 builds, where the SIMD variants are compiled
#include "kernels/x86/cpu_features.h"
#endif

namespace dsv3::kernels {

void unsupported_dtype(DType dtype) { fail("kernels: unsupported weight dtype ", dtype_name(dtype)); }

// Automatic choice: the last one the CPU supports. avx512bf16 changes the numerics (activations
// rounded to BF16 for BF16/FP8 weights), so it is chosen only by name and listed before avx512.
const std::vector<const Variant*>& compiled_variants() {
#if DSV3_KERNELS_X86
  static const std::vector<const Variant*> all{&scalar::variant(), &avx2::variant(), &avx512::bf16_variant(),
                                               &avx512::variant()};
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
// The variant named `name` (from `what`: "DSV3_KERNELS=..." or "--kernels ..."); throws naming
// the compiled ones if unknown, or the missing CPU feature.
const Variant& by_name(const std::string& name, const std::string& what) {
  std::string names;
  for (const Variant* v : compiled_variants()) {
    names += names.empty() ? v->name : std::string(", ") + v->name;
    if (v->name != name) continue;
    const std::string missing = missing_cpu_feature(*v);
    DSV3_CHECK(missing.empty(), what, ": this CPU lacks ", missing);
    return *v;
  }
  fail(what, ": unknown kernel variant (this build has: ", names, ")");
}

const Variant* g_selected = nullptr;

const Variant& choose() {
  if (g_selected != nullptr) return *g_selected;
  if (const char* forced = std::getenv("DSV3_KERNELS"); forced != nullptr && *forced != '\0')
    return by_name(forced, std::string("DSV3_KERNELS=") + forced);
  const auto& all = compiled_variants();
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (missing_cpu_feature(**it).empty()) return **it;
  return scalar::variant();
}
}  // namespace

const Variant& active() {
  static const Variant& v = choose();
  return v;
}

void select_variant(const std::string& name) {
  const Variant& v = by_name(name, "--kernels " + name);
  g_selected = &v;
  DSV3_CHECK(&active() == &v, "--kernels ", name, ": the kernels were already chosen (", active().name, ")");
}

}  // namespace dsv3::kernels
