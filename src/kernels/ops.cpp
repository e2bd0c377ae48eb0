// The kernel interface, forwarding to the variant chosen for this machine (see dispatch.cpp).
#include "kernels/ops.h"

#include <vector>

#include "kernels/variant.h"

namespace dsv3::kernels {

namespace {
// Per-thread decode buffer for the linear kernels, grown to the widest matrix seen.
float* linear_scratch(int64_t cols) {
  thread_local std::vector<float> scratch;
  const size_t need = size_t(kLinearScratchRows * cols);
  if (scratch.size() < need) scratch.resize(need);
  return scratch.data();
}
}  // namespace

void linear(const Matrix& w, const float* x, float* y, int64_t n, ThreadPool& pool) {
  const Variant& v = active();
  pool.parallel_for(w.rows, [&](int64_t r0, int64_t r1) { v.linear_rows(w, x, y, n, r0, r1, linear_scratch(w.cols)); });
}

void linear(const Matrix& w, const float* x, float* y, int64_t n) {
  active().linear_rows(w, x, y, n, 0, w.rows, linear_scratch(w.cols));
}

void linear_transposed_acc(const Matrix& w, const float* x, float* y) {
  active().linear_transposed_acc(w, x, y, linear_scratch(w.cols));
}
void dequant_row(const Matrix& w, int64_t r, float* out) { active().dequant_row_range(w, r, 0, w.cols, out); }
void rmsnorm(const float* x, const Matrix& weight, float eps, float* y) { active().rmsnorm(x, weight, eps, y); }
void rope_interleaved(float* x, const float* cos, const float* sin, int64_t dim) {
  active().rope_interleaved(x, cos, sin, dim);
}
void softmax(float* x, int64_t n) { active().softmax(x, n); }
void silu_mul(const float* gate, const float* up, float* out, int64_t n) { active().silu_mul(gate, up, out, n); }
float dot(const float* a, const float* b, int64_t n) { return active().dot(a, b, n); }
void axpy(float a, const float* x, float* y, int64_t n) { active().axpy(a, x, y, n); }

std::string active_variant() { return active().name; }

}  // namespace dsv3::kernels
