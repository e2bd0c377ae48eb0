// Linked into the test executables whose expectations are float32 numerics (golden conformance
// with DeepSeek's model.py, MLA forms and batchings compared within float32 rounding, the
// trainer's float32 function, tolerances derived for float32 activations): selects the best
// float32 kernels before any test runs, since the default kernels round activations to BF16
// where the CPU has VDPBF16PS. DSV3_KERNELS, if set, still wins (to run these tests on another
// float32 variant, e.g. DSV3_KERNELS=avx2).
#include <gtest/gtest.h>

#include <cstdlib>

#include "kernels/variant.h"

namespace {

class Float32Kernels : public ::testing::Environment {
 public:
  void SetUp() override {
    if (const char* forced = std::getenv("DSV3_KERNELS"); forced == nullptr || *forced == '\0')
      dsv3::kernels::select_variant(dsv3::kernels::kFloat32Kernels);
  }
};

[[maybe_unused]] testing::Environment* const kEnvironment = testing::AddGlobalTestEnvironment(new Float32Kernels);

}  // namespace
