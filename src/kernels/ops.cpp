// Dispatch from the kernel interface to the variant chosen for this machine.
#include "kernels/ops.h"

#include <vector>

#include "kernels/scalar/scalar.h"

namespace dsv3::kernels {

void linear(const Matrix& w, const float* x, float* y, int64_t n, ThreadPool& pool) {
  pool.parallel_for(w.rows, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < size_t(w.cols)) scratch.resize(size_t(w.cols));
    scalar::linear_rows(w, x, y, n, r0, r1, scratch.data());
  });
}

void linear(const Matrix& w, const float* x, float* y, int64_t n) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < size_t(w.cols)) scratch.resize(size_t(w.cols));
  scalar::linear_rows(w, x, y, n, 0, w.rows, scratch.data());
}

void linear_transposed_acc(const Matrix& w, const float* x, float* y) { scalar::linear_transposed_acc(w, x, y); }
void dequant_row(const Matrix& w, int64_t r, float* out) { scalar::dequant_row_range(w, r, 0, w.cols, out); }
void rmsnorm(const float* x, const Matrix& weight, float eps, float* y) { scalar::rmsnorm(x, weight, eps, y); }
void rope_interleaved(float* x, const float* cos, const float* sin, int64_t dim) {
  scalar::rope_interleaved(x, cos, sin, dim);
}
void softmax(float* x, int64_t n) { scalar::softmax(x, n); }
void silu_mul(const float* gate, const float* up, float* out, int64_t n) { scalar::silu_mul(gate, up, out, n); }

std::string active_variant() { return "scalar"; }

}  // namespace dsv3::kernels
