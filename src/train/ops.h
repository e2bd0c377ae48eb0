// Elementwise and row-wise pieces of the trainer with their backward passes: RMSNorm, rotary
// embedding (interleaved pairs, as model/rope.h), SwiGLU's silu, and cross-entropy.
// Templated on the scalar type: float for training, double for the gradient checks.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "io/config.h"

namespace dsv3::train {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for n rows of d elements, rows `ldx`/`ldy` apart.
// rstd[r] receives 1 / sqrt(mean + eps). y may alias x.
template <typename T>
void rmsnorm_fwd(const T* x, int64_t ldx, const T* w, int64_t n, int64_t d, double eps, T* y, int64_t ldy, T* rstd);
// dx[r] (+)= d y / d x applied to dy (accumulates when `accumulate`); dw += sum over rows.
template <typename T>
void rmsnorm_bwd(const T* x, int64_t ldx, const T* w, const T* rstd, const T* dy, int64_t ldy, int64_t n, int64_t d,
                 T* dx, int64_t lddx, bool accumulate, T* dw);

// cos/sin of every position < max_len for the rope pairs, computed by model/rope.h's Rope so
// that training and inference rotate identically.  [max_len, dr / 2] each.
struct RopeTable {
  int64_t half = 0, max_len = 0;
  float softmax_scale = 1;
  std::vector<float> cos, sin;
  RopeTable(const ModelConfig& c, int64_t max_len);
};
// Rotates x[0..dr) of a row at position pos; inverse rotates by -angle (the backward pass,
// since the rotation is orthogonal).
template <typename T>
void rope_rotate(T* x, const RopeTable& r, int64_t pos, bool inverse);

// Mean-free cross-entropy over n rows of logits [n, V] against targets: returns the summed
// loss (double) and overwrites logits with scale * (softmax - onehot), the gradient of
// scale * summed loss. If `keep` is non-null it receives the logits before that.
template <typename T>
double cross_entropy(T* logits, const int32_t* targets, int64_t n, int64_t V, double scale, ThreadPool* pool,
                     std::vector<T>* keep = nullptr);

}  // namespace dsv3::train
