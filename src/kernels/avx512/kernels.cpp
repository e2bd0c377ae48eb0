// The AVX-512 kernel variant (F, BW, VL, DQ, VBMI, VNNI; compiled with those flags and reached only
// after dispatch.cpp saw them in cpuid), with the traits of avx512/traits.h: float32 activations
// throughout, as the AVX2 variant. avx512/bf16dot.cpp builds the avx512bf16 variant on it.
#include "kernels/avx512/qtraits.h"
#include "kernels/avx512/traits.h"
#include "kernels/scalar/scalar.h"
#include "kernels/simd/elementwise.h"
#include "kernels/simd/gemm.h"
#include "kernels/simd/linear.h"
#include "kernels/simd/matmul.h"
#include "kernels/simd/qblocks.h"
#include "kernels/simd/variant_gemm.h"
#include "kernels/variant.h"

namespace dsv3::kernels::avx512 {
namespace {

const Gemm kGemm = simd::BlockOrFloatGemm<V, Q>::make(V::kGemmMinTokensFp8);

// ggml block formats go to simd/qblocks.h (int16 activations), the rest to simd/linear.h.
void linear_rows(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float* scratch) {
  if (simd::qblocks::supported(w.dtype)) return simd::qblocks::linear_rows<Q>(w, x, y, n, r0, r1);
  simd::linear_rows<V>(w, x, y, n, r0, r1, scratch);
}

}  // namespace

const Variant& variant() {
  static const Variant v{
      "avx512",
      linear_rows,
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
