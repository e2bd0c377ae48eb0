// One kernel variant (scalar, avx2, avx512) as a table of function pointers, and the run-time
// choice between them. ops.cpp calls through the table chosen once at startup; tests and the
// benchmark call every supported table directly so each variant is checked against scalar.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/matrix.h"

namespace dsv3::kernels {

// Rows a linear kernel decodes at a time: `scratch` passed to linear_rows holds
// kLinearScratchRows * w.cols floats.
constexpr int64_t kLinearScratchRows = 4;

struct Variant {
  const char* name;
  // Rows [r0, r1) of y = W x for n tokens (x is [n, w.cols], y is [n, w.rows]). Each row's
  // result depends only on that row and x, never on r0, r1 or n, so it is the same for any
  // split across threads.
  void (*linear_rows)(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1,
                      float* scratch);
  // y[c] += sum_r x[r] W[r, c]; `scratch` holds kLinearScratchRows * w.cols floats.
  void (*linear_transposed_acc)(const Matrix& w, const float* x, float* y, float* scratch);
  void (*dequant_row_range)(const Matrix& w, int64_t r, int64_t c0, int64_t n, float* out);
  void (*rmsnorm)(const float* x, const Matrix& weight, float eps, float* y);
  void (*rope_interleaved)(float* x, const float* cos, const float* sin, int64_t dim);
  void (*softmax)(float* x, int64_t n);
  void (*silu_mul)(const float* gate, const float* up, float* out, int64_t n);
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float a, const float* x, float* y, int64_t n);
};

// Throws: the kernels have no code for weights of this dtype. Defined outside the ISA-specific
// translation units so that they never instantiate error-formatting code with their flags.
[[noreturn]] void unsupported_dtype(DType dtype);

// Every variant compiled into this binary, best last ("scalar" first, always present).
const std::vector<const Variant*>& compiled_variants();
// Empty if this CPU can run `v`, else the name of a missing feature ("avx512vbmi").
std::string missing_cpu_feature(const Variant& v);
// The variant the ops in ops.h use: DSV3_KERNELS if set (throws if unknown or unsupported),
// else the best one this CPU supports. Chosen on first use.
const Variant& active();

namespace scalar {
const Variant& variant();
}
namespace avx2 {
const Variant& variant();
}
namespace avx512 {
const Variant& variant();
}

}  // namespace dsv3::kernels
