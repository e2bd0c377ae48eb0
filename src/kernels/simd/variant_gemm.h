// The GEMM an x86 variant registers (variant.h: Gemm): ggml block formats to simd/qgemm.h (the
// decode kernel's int16 arithmetic, integer traits Q), every other dtype to simd/gemm.h (float
// traits V). Included by each variant's kernels.cpp, which compiles it for its own ISA.
#pragma once
#include <cstdint>

#include "kernels/matrix.h"
#include "kernels/simd/gemm.h"
#include "kernels/simd/qblocks.h"
#include "kernels/simd/qgemm.h"
#include "kernels/variant.h"

namespace dsv3::kernels::simd {

template <class V, class Q>
struct BlockOrFloatGemm {
  static bool is_block(const Matrix& w) { return qblocks::supported(w.dtype); }
  static bool supports(const Matrix& w) { return is_block(w) ? w.cols > 0 : gemm_supports<V>(w); }
  static int64_t packed_x_floats(const Matrix& w, int64_t n) {
    return is_block(w) ? qgemm::packed_x_floats<Q, V::kGemmTokens>(w, n) : gemm_packed_x_floats<V>(w, n);
  }
  static int64_t scratch_floats(const Matrix& w) {
    return is_block(w) ? qgemm::scratch_floats<Q>(w) : gemm_scratch_floats<V>(w);
  }
  static void pack_x(const Matrix& w, const float* x, int64_t n, int64_t tile0, int64_t tile1, float* xp) {
    if (is_block(w)) return qgemm::pack_x<Q, V::kGemmTokens>(w, x, n, tile0, tile1, xp);
    gemm_pack_x<V>(w, x, n, tile0, tile1, xp);
  }
  static void rows(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1,
                   float* scratch) {
    if (is_block(w)) return qgemm::rows<Q, V::kGemmTokens>(w, xp, y, t0, t1, r0, r1, scratch);
    gemm_rows<V>(w, xp, y, t0, t1, r0, r1, scratch);
  }
  // The Gemm record: linear takes it from V::kGemmMinTokens tokens on, from min_tokens_fp8 for FP8.
  static Gemm make(int64_t min_tokens_fp8) {
    return {V::kGemmMinTokens, min_tokens_fp8, V::kGemmTokens, V::kGemmRowRegs * V::kLanes,
            supports,          packed_x_floats, scratch_floats, pack_x,  rows};
  }
};

}  // namespace dsv3::kernels::simd
