// A linear layer's three GEMMs (y = x W^T, dx = dy W, dW += dy^T x), optionally in simulated
// FP8: with Precision::FP8 every GEMM input is quantized to e4m3 first, as DeepSeek-V3 trains
// (report section 3.3, figure 6): activations and output gradients in 1x128 tiles along the
// reduction dimension (128x1 tiles, i.e. along tokens, for the weight gradient), weights in
// 128x128 blocks; accumulation, master weights and weight gradients stay F32.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace dsv3::train {

enum class Precision { F32, FP8 };

// How modules run: the pool for their GEMMs (null: the calling thread only) and the precision
// of quantizable linears (embedding, head, gate, norms and attention core never quantize).
struct Exec {
  ThreadPool* pool = nullptr;
  Precision precision = Precision::F32;
  Exec serial() const { return Exec{nullptr, precision}; }
};

// y[n, out] = x[n, in] W[out, in]^T.
template <typename T>
void linear_fwd(const Exec& e, const T* W, int64_t out, int64_t in, const T* x, int64_t n, T* y,
                bool quantizable = true);
// dW[out, in] += dy^T x; dx[n, in] = dy W, added to dx when `accumulate_dx` (dx may be null:
// no input gradient wanted).
template <typename T>
void linear_bwd(const Exec& e, const T* W, T* dW, int64_t out, int64_t in, const T* x, const T* dy, int64_t n, T* dx,
                bool accumulate_dx, bool quantizable = true);

}  // namespace dsv3::train
