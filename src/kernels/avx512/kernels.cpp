// The AVX-512 kernel variant (F, BW, VL, DQ, VBMI; compiled with those flags and reached only
// after dispatch.cpp saw them in cpuid), with the traits of avx512/traits.h: float32 activations
// throughout, as the AVX2 variant. avx512/bf16dot.cpp builds the avx512bf16 variant on it.
#include "kernels/avx512/traits.h"
#include "kernels/scalar/scalar.h"
#include "kernels/simd/elementwise.h"
#include "kernels/simd/gemm.h"
#include "kernels/simd/linear.h"
#include "kernels/simd/matmul.h"
#include "kernels/variant.h"

namespace dsv3::kernels::avx512 {
namespace {

const Gemm kGemm{
    V::kGemmMinTokens, V::kGemmMinTokensFp8, V::kGemmTokens, V::kGemmRowRegs * V::kLanes,
    simd::gemm_supports<V>, simd::gemm_packed_x_floats<V>, simd::gemm_scratch_floats<V>,
    simd::gemm_pack_x<V>, simd::gemm_rows<V>,
};

}  // namespace

const Variant& variant() {
  static const Variant v{
      "avx512",
      simd::linear_rows<V>,
      simd::linear_transposed_acc<V>,
      simd::dequant_row_range_any<V>,
      simd::rmsnorm<V>,
      scalar::rope_interleaved,  // 64 values per head: not worth a vector version
      simd::softmax<V>,
      simd::softmax_partial<V>,
      simd::silu_mul<V>,
      simd::dot<V>,
      simd::axpy<V>,
      simd::matmul<V>,
      &kGemm,
  };
  return v;
}

}  // namespace dsv3::kernels::avx512
