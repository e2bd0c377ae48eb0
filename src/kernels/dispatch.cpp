// Chooses the kernel variant once, from what the CPU reports or from DSV3_KERNELS.
#include <cstdlib>

#include "core/error.h"
#include "kernels/variant.h"
#if DSV3_KERNELS_X86  // set by CMake for x86-64 builds, where the SIMD variants are compiled
#include "kernels/x86/cpu_features.h"
#endif

namespace dsv3::kernels {

void unsupported_dtype(DType dtype) { fail("kernels: unsupported weight dtype ", dtype_name(dtype)); }

// Automatic choice: the last one the CPU supports. avx512bf16 (activations rounded to BF16 for
// BF16/FP8 weights) is the default where it runs: the owner's accuracy bar (mean KL <= 2e-4,
// top-1 >= 99% against the float32 reference on models/dsv3-kjv) holds for it (docs/kernels.md).
const std::vector<const Variant*>& compiled_variants() {
#if DSV3_KERNELS_X86
  static const std::vector<const Variant*> all{&scalar::variant(), &avx2::variant(), &avx512::variant(),
                                               &avx512::bf16_variant()};
#else
  static const std::vector<const Variant*> all{&scalar::variant()};
#endif
  return all;
}

const Variant* bf16_variant_with(Fp8Dot how) {
#if DSV3_KERNELS_X86
  return &avx512::bf16_variant(how);
#else
  (void)how;
  return nullptr;
#endif
}

std::string bf16_fp8_path() {
#if DSV3_KERNELS_X86
  if (!missing_cpu_feature(avx512::bf16_variant()).empty()) return "";
  return avx512::fp8_dot() == Fp8Dot::kFma ? "fma" : "lookup";
#else
  return "";
#endif
}

std::string missing_cpu_feature(const Variant& v) {
#if DSV3_KERNELS_X86
  return x86::missing_feature(v.name);
#else
  return "";
#endif
}

namespace {
// The last variant in `all` this CPU runs that float32_only allows (scalar always runs).
const Variant& best_supported(bool float32_only) {
  const auto& all = compiled_variants();
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (!(float32_only && (*it)->bf16_activations) && missing_cpu_feature(**it).empty()) return **it;
  return scalar::variant();
}

}  // namespace

const Variant& find_variant(const std::string& name, const std::string& what) {
  if (name == kFloat32Kernels) return best_supported(true);
  std::string names = kFloat32Kernels;
  for (const Variant* v : compiled_variants()) {
    names += std::string(", ") + v->name;
    if (v->name != name) continue;
    const std::string missing = missing_cpu_feature(*v);
    DSV3_CHECK(missing.empty(), what, ": this CPU lacks ", missing);
    return *v;
  }
  fail(what, ": unknown kernel variant (this build has: ", names, ")");
}

namespace {
const Variant* g_selected = nullptr;

const Variant& choose() {
  if (g_selected != nullptr) return *g_selected;
  if (const char* forced = std::getenv("DSV3_KERNELS"); forced != nullptr && *forced != '\0')
    return find_variant(forced, std::string("DSV3_KERNELS=") + forced);
  return best_supported(false);
}
}  // namespace

const Variant& active() {
  static const Variant& v = choose();
  return v;
}

void select_variant(const std::string& name) {
  const Variant& v = find_variant(name, "--kernels " + name);
  g_selected = &v;
  DSV3_CHECK(&active() == &v, "--kernels ", name, ": the kernels were already chosen (", active().name, ")");
}

}  // namespace dsv3::kernels
