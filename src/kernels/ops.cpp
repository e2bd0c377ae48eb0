// The kernel interface, forwarding to the variant chosen for this machine (see dispatch.cpp).
#include "kernels/ops.h"

#include <utility>
#include <vector>

#include "kernels/variant.h"

namespace dsv3::kernels {

namespace {
// Per-thread buffer of at least `floats` floats, grown to the largest request seen.
float* thread_buffer(std::vector<float>& buf, int64_t floats) {
  if (buf.size() < size_t(floats)) buf.resize(size_t(floats));
  return buf.data();
}
float* linear_scratch(int64_t cols) {
  thread_local std::vector<float> scratch;
  return thread_buffer(scratch, kLinearScratchRows * cols);
}

// Packed activations of one GEMM call stay within this size (n x cols floats plus padding):
// longer prompts go through in token chunks, each weight decoded once per chunk.
constexpr int64_t kPackedActivationBytes = int64_t(16) << 20;

// Runs fn(ith, nth) on the pool's threads, or as the only participant without a pool.
template <class F>
void run_on(ThreadPool* pool, const F& fn) {
  if (pool == nullptr || pool->size() == 1) return fn(0, 1);
  pool->run(fn);
}

// Contiguous share `ith` of `units` split `nth` ways.
std::pair<int64_t, int64_t> share(int64_t units, int ith, int nth) {
  return {units * ith / nth, units * (ith + 1) / nth};
}

void gemm(const Gemm& g, const Matrix& w, const float* x, float* y, int64_t n, ThreadPool* pool) {
  const int64_t cols = w.cols, nt = g.token_tile;
  int64_t chunk = kPackedActivationBytes / int64_t(sizeof(float)) / g.packed_x_floats(w, nt) * nt;
  chunk = chunk < nt ? nt : chunk;
  thread_local std::vector<float> packed;
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t nc = n - c0 < chunk ? n - c0 : chunk, tiles = (nc + nt - 1) / nt;
    float* xp = thread_buffer(packed, g.packed_x_floats(w, nc));
    const float* xc = x + c0 * cols;
    float* yc = y + c0 * w.rows;
    run_on(pool, [&](int ith, int nth) {
      const auto [a, b] = share(tiles, ith, nth);
      if (a < b) g.pack_x(w, xc, nc, a, b, xp);
    });
    // Threads take whole register tiles of rows; if there are fewer tiles than threads, they
    // take token tiles instead (every row each).
    const int64_t row_units = (w.rows + g.row_tile - 1) / g.row_tile;
    run_on(pool, [&](int ith, int nth) {
      thread_local std::vector<float> scratch;
      float* s = thread_buffer(scratch, g.scratch_floats(w));
      if (row_units >= nth || tiles < nth) {
        const auto [a, b] = share(row_units, ith, nth);
        const int64_t r0 = a * g.row_tile, r1 = b * g.row_tile < w.rows ? b * g.row_tile : w.rows;
        if (r0 < r1) g.rows(w, xp, yc, 0, nc, r0, r1, s);
      } else {
        const auto [a, b] = share(tiles, ith, nth);
        if (a < b) g.rows(w, xp, yc, a * nt, b * nt < nc ? b * nt : nc, 0, w.rows, s);
      }
    });
  }
}
}  // namespace

void linear_with(const Variant& v, const Matrix& w, const float* x, float* y, int64_t n, ThreadPool* pool) {
  if (v.gemm != nullptr && n >= gemm_min_tokens(*v.gemm, w) && v.gemm->supports(w)) return gemm(*v.gemm, w, x, y, n, pool);
  if (pool == nullptr) return v.linear_rows(w, x, y, n, 0, w.rows, linear_scratch(w.cols));
  // ggml block formats: one share per thread, since each linear_rows call quantizes all n
  // tokens' activations first (simd/qblocks.h).
  if (dtype_is_block(w.dtype))
    return pool->parallel_for(w.rows, [&](int64_t r0, int64_t r1) { v.linear_rows(w, x, y, n, r0, r1, linear_scratch(w.cols)); });
  // Rows in chunks claimed dynamically (boundaries on multiples of 32 rows, so no 4-row register
  // tile is cut), so a thread that starts late or reads memory more slowly takes fewer: decode
  // runs ~130 such regions per token.
  pool->parallel_chunks(w.rows, 32,
                        [&](int64_t r0, int64_t r1) { v.linear_rows(w, x, y, n, r0, r1, linear_scratch(w.cols)); });
}

void linear(const Matrix& w, const float* x, float* y, int64_t n, ThreadPool& pool) { linear_with(active(), w, x, y, n, &pool); }

void linear(const Matrix& w, const float* x, float* y, int64_t n) { linear_with(active(), w, x, y, n, nullptr); }

void linear_transposed_acc(const Matrix& w, const float* x, float* y, int64_t n) {
  active().linear_transposed_acc(w, x, y, n);
}
void dequant_row(const Matrix& w, int64_t r, float* out) { active().dequant_row_range(w, r, 0, w.cols, out); }
void rmsnorm(const float* x, const Matrix& weight, float eps, float* y) { active().rmsnorm(x, weight, eps, y); }
void rope_interleaved(float* x, const float* cos, const float* sin, int64_t dim) {
  active().rope_interleaved(x, cos, sin, dim);
}
void softmax(float* x, int64_t n) { active().softmax(x, n); }
float softmax_partial(float* x, int64_t n, float scale, float* max) {
  return active().softmax_partial(x, n, scale, max);
}
void silu_mul(const float* gate, const float* up, float* out, int64_t n) { active().silu_mul(gate, up, out, n); }
float dot(const float* a, const float* b, int64_t n) { return active().dot(a, b, n); }
void axpy(float a, const float* x, float* y, int64_t n) { active().axpy(a, x, y, n); }
void matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, bool b_trans,
            float* c, int64_t ldc) {
  active().matmul(m, n, k, a, lda, b, ldb, b_trans, c, ldc);
}

std::string active_variant() { return active().name; }
std::string active_fp8_path() { return active().name == std::string("avx512bf16") ? bf16_fp8_path() : ""; }

}  // namespace dsv3::kernels
