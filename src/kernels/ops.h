// The kernel interface the model is written against. Every op has a scalar reference in
// kernels/scalar/; faster variants (SIMD, later CUDA) plug in behind these same functions.
// Shapes are in PyTorch order; activations are float32, row-major.
#pragma once
#include <cstdint>
#include <string>

#include "core/thread_pool.h"
#include "kernels/matrix.h"

namespace dsv3::kernels {

// y[t, :] = W x[t, :] for t < n: x is [n, w.cols], y is [n, w.rows]. F32 accumulation.
void linear(const Matrix& w, const float* x, float* y, int64_t n, ThreadPool& pool);
// The same on the calling thread only (for callers already running inside the pool).
void linear(const Matrix& w, const float* x, float* y, int64_t n);

// y[t, c] += sum_r x[t, r] * W[r, c] for t < n: x is [n, w.rows], y is [n, w.cols]. The
// transposed product that absorbs kv_b_proj's key part into the query and gathers attention's
// latent output (MLA "absorb" form). Vector t's result does not depend on n.
void linear_transposed_acc(const Matrix& w, const float* x, float* y, int64_t n = 1);

// out[c] = W[r, c] dequantized (embedding lookup, norm weights).
void dequant_row(const Matrix& w, int64_t r, float* out);

// y = x / sqrt(mean(x^2) + eps) * weight, over `w.cols` elements (w is a [1, dim] view).
void rmsnorm(const float* x, const Matrix& weight, float eps, float* y);

// Rotates the pairs (x[2i], x[2i+1]) by the angle whose cos/sin are given: dim/2 entries each.
void rope_interleaved(float* x, const float* cos, const float* sin, int64_t dim);

// In-place numerically safe softmax over n entries (-inf entries get probability 0).
void softmax(float* x, int64_t n);

// One block of a softmax split into blocks (flash attention): with m = max_i scale x[i],
// x[i] <- exp(scale x[i] - m); *max <- m; returns sum_i x[i]. Blocks are then merged with
// weights exp(m_k - M). All entries -inf: x all 0, *max -inf, returns 0.
float softmax_partial(float* x, int64_t n, float scale, float* max);

// out = silu(gate) * up, elementwise.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

// sum_i a[i] b[i] (attention scores over the latent cache).
float dot(const float* a, const float* b, int64_t n);

// y[i] += a x[i] (attention output as a weighted sum of cached latents).
void axpy(float a, const float* x, float* y, int64_t n);

// C[i, j] = sum_kk A[i, kk] B(kk, j) for i < m, j < n, kk < k, with B(kk, j) = b[kk * ldb + j]
// or, if b_trans, b[j * ldb + kk]; A's rows are lda apart, C's ldc (only C[i, j] for j < n is
// written). Float32 activations on both sides (attention's scores and values in the expanded
// MLA form). Each element is one FMA chain in increasing kk from 0, so every variant gives the
// same bits. Runs on the calling thread.
void matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, bool b_trans,
            float* c, int64_t ldc);

// Name of the variant these calls dispatch to: "scalar", "avx2", "avx512" or "avx512bf16", the
// best this CPU supports unless --kernels or the environment variable DSV3_KERNELS names one
// ("f32": the best float32 one).
std::string active_variant();
// How the active variant multiplies FP8 weights for a few tokens where it has a choice
// (avx512bf16: "fma" or "lookup", timed on first use; variant.h: Fp8Dot), else "".
std::string active_fp8_path();

}  // namespace dsv3::kernels
