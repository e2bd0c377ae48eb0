// One kernel variant (scalar, avx2, avx512, avx512bf16) as a table of function pointers, and the run-time
// choice between them. ops.cpp calls through the table chosen once at startup; tests and the
// benchmark call every supported table directly so each variant is checked against scalar.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/matrix.h"

namespace dsv3::kernels {

// Rows a linear kernel decodes at a time: `scratch` passed to linear_rows holds
// kLinearScratchRows * w.cols floats.
constexpr int64_t kLinearScratchRows = 4;

// The many-token path of linear (a GEMM; simd/gemm.h), in two phases so that the activations
// are repacked once per call and shared by every thread: pack_x (split over token tiles), then
// rows (split over output rows, or over token tiles when rows are few). Its results are
// bitwise those of linear_rows for the same row and token.
struct Gemm {
  int64_t min_tokens;      // linear uses this path from this many tokens on (gemm_min_tokens)
  int64_t min_tokens_fp8;  // the same for FP8 weights
  int64_t token_tile;  // tokens per packed tile: pack_x's tiles, rows' t0
  int64_t row_tile;    // rows per register tile: the unit a row split should use
  // False if `w` needs linear_rows (unknown dtype, FP8 scales outside the vector decode's range).
  bool (*supports)(const Matrix& w);
  // Sizes and layout depend on w's columns and, for avx512bf16, its dtype.
  int64_t (*packed_x_floats)(const Matrix& w, int64_t n);
  int64_t (*scratch_floats)(const Matrix& w);
  // Token tiles [tile0, tile1) of x [n, w.cols] into xp (packed_x_floats(w, n) floats).
  void (*pack_x)(const Matrix& w, const float* x, int64_t n, int64_t tile0, int64_t tile1, float* xp);
  // y[t, r] for tokens [t0, t1) (t0 a multiple of token_tile) and rows [r0, r1); y is [n, w.rows];
  // `scratch` holds scratch_floats(w) floats.
  void (*rows)(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1,
               float* scratch);
};

// Tokens from which linear takes `g` for `w`.
inline int64_t gemm_min_tokens(const Gemm& g, const Matrix& w) {
  return w.dtype == DType::F8_E4M3 ? g.min_tokens_fp8 : g.min_tokens;
}

struct Variant {
  const char* name;
  // Rows [r0, r1) of y = W x for n tokens (x is [n, w.cols], y is [n, w.rows]). Each row's
  // result depends only on that row and x, never on r0, r1 or n, so it is the same for any
  // split across threads.
  void (*linear_rows)(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1,
                      float* scratch);
  // y[t, c] += sum_r x[t, r] W[r, c] for t < n (x is [n, w.rows], y is [n, w.cols]); each
  // (t, c) gets the bits a call for vector t alone gives it.
  void (*linear_transposed_acc)(const Matrix& w, const float* x, float* y, int64_t n);
  void (*dequant_row_range)(const Matrix& w, int64_t r, int64_t c0, int64_t n, float* out);
  void (*rmsnorm)(const float* x, const Matrix& weight, float eps, float* y);
  void (*rope_interleaved)(float* x, const float* cos, const float* sin, int64_t dim);
  void (*softmax)(float* x, int64_t n);
  float (*softmax_partial)(float* x, int64_t n, float scale, float* max);
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float a, const float* x, float* y, int64_t n);
  // C = A B over float32 activations, one FMA chain per element in increasing k: every
  // variant gives the scalar reference's bits (ops.h: matmul).
  void (*matmul)(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool b_trans, float* c, int64_t ldc);
  const Gemm* gemm;  // null: linear_rows serves every n (the scalar reference)
  // BF16 and FP8 weights multiply activations rounded to BF16 (avx512bf16 and its scalar twin
  // scalar::bf16dot_variant(), scalar/bf16dot.cpp) instead of float32 ones.
  bool bf16_activations = false;
};

// y = W x for n tokens through variant `v`: linear_rows for few tokens, else v.gemm. With a
// pool the work is split across its threads, else it runs on the calling thread. What ops.h's
// linear does with the active variant; tests and benchmarks call it for each variant.
void linear_with(const Variant& v, const Matrix& w, const float* x, float* y, int64_t n, ThreadPool* pool);

// Throws: the kernels have no code for weights of this dtype. Defined outside the ISA-specific
// translation units so that they never instantiate error-formatting code with their flags.
[[noreturn]] void unsupported_dtype(DType dtype);

// Every variant compiled into this binary ("scalar" first, always present); the automatic choice
// is the last one the CPU supports.
const std::vector<const Variant*>& compiled_variants();
// The name that selects the best float32 variant this CPU runs (float32 activations everywhere:
// the reference numerics up to summation order; the golden conformance tests run it).
inline constexpr const char* kFloat32Kernels = "f32";
// Empty if this CPU can run `v`, else the name of a missing feature ("avx512vbmi").
std::string missing_cpu_feature(const Variant& v);
// The variant `name` names (a variant's name or kFloat32Kernels); `what` introduces errors
// ("--kernels NAME"). Throws naming the compiled variants if unknown, or the missing CPU feature.
const Variant& find_variant(const std::string& name, const std::string& what);
// The variant the ops in ops.h use: the one select_variant named, else DSV3_KERNELS if set
// (throws if unknown or unsupported), else the last compiled one this CPU supports. Chosen on
// first use. Names: a variant's, or kFloat32Kernels.
const Variant& active();
// Makes `name` the active variant (the CLI's --kernels); call before any kernel runs. Throws if
// the name is unknown, the CPU lacks a feature it needs, or another variant is already active.
void select_variant(const std::string& name);

namespace scalar {
const Variant& variant();
// scalar::variant() with linear_rows_bf16dot: what avx512bf16 computes, for its tests. Not
// among compiled_variants(): nothing dispatches to it.
const Variant& bf16dot_variant();
}
namespace avx2 {
const Variant& variant();
}
// avx512bf16's two ways to multiply FP8 weights for a few tokens, with the same bits: VDPBF16PS
// on codes looked up as BF16, or float32 FMAs on codes decoded to float32 (avx512/bf16dot.cpp).
enum class Fp8Dot { kAuto, kLookup, kFma };
// avx512bf16 with its FP8 path fixed (kAuto: avx512bf16 itself), for tests and benchmarks; null
// where avx512bf16 is not compiled.
const Variant* bf16_variant_with(Fp8Dot how);
// "fma" or "lookup": the path avx512bf16 takes on this CPU, timed on first use; "" where
// avx512bf16 is not compiled or this CPU cannot run it.
std::string bf16_fp8_path();

namespace avx512 {
const Variant& variant();
const Variant& bf16_variant();  // "avx512bf16" (avx512/bf16dot.cpp)
Fp8Dot fp8_dot();               // bf16_fp8_path(); call only where avx512bf16 runs
const Variant& bf16_variant(Fp8Dot how);
}

}  // namespace dsv3::kernels
