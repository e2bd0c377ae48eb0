// The AVX-512 kernel variant (F, BW, VL, DQ, VBMI; compiled with those flags and reached only
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
#include "kernels/simd/qgemm.h"
#include "kernels/variant.h"

namespace dsv3::kernels::avx512 {
namespace {

// The GEMM: ggml block formats to simd/qgemm.h (the decode kernel's int16 arithmetic), the
// rest to simd/gemm.h.
bool is_block(const Matrix& w) { return simd::qblocks::supported(w.dtype); }
bool gemm_supports(const Matrix& w) { return is_block(w) ? w.cols > 0 : simd::gemm_supports<V>(w); }
int64_t gemm_packed_x_floats(const Matrix& w, int64_t n) {
  return is_block(w) ? simd::qgemm::packed_x_floats<Q, V::kGemmTokens>(w, n) : simd::gemm_packed_x_floats<V>(w, n);
}
int64_t gemm_scratch_floats(const Matrix& w) {
  return is_block(w) ? simd::qgemm::scratch_floats<Q>(w) : simd::gemm_scratch_floats<V>(w);
}
void gemm_pack_x(const Matrix& w, const float* x, int64_t n, int64_t tile0, int64_t tile1, float* xp) {
  if (is_block(w)) return simd::qgemm::pack_x<Q, V::kGemmTokens>(w, x, n, tile0, tile1, xp);
  simd::gemm_pack_x<V>(w, x, n, tile0, tile1, xp);
}
void gemm_rows(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1, float* scratch) {
  if (is_block(w)) return simd::qgemm::rows<Q, V::kGemmTokens>(w, xp, y, t0, t1, r0, r1, scratch);
  simd::gemm_rows<V>(w, xp, y, t0, t1, r0, r1, scratch);
}

const Gemm kGemm{
    V::kGemmMinTokens, V::kGemmMinTokensFp8, V::kGemmTokens, V::kGemmRowRegs * V::kLanes,
    gemm_supports, gemm_packed_x_floats, gemm_scratch_floats, gemm_pack_x, gemm_rows,
};

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
