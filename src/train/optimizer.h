// AdamW with decoupled weight decay (Loshchilov & Hutter), global-norm gradient clipping, and
// the learning-rate schedule nanoGPT uses: linear warmup, then cosine decay to a floor.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "train/params.h"

namespace dsv3::train {

struct OptimConfig {
  double lr = 3e-3;            // peak learning rate
  double min_lr_ratio = 0.1;   // floor of the cosine, as a fraction of lr
  int64_t warmup = 100;        // steps of linear warmup
  int64_t steps = 1000;        // total steps (end of the cosine)
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;   // on matrices only (ParamInfo::decay)
  double clip = 1.0;           // max global gradient norm; 0: no clipping
};

// Throws dsv3::Error naming the first invalid field.
void validate(const OptimConfig& o);

// Learning rate of step `step` (0-based).
double lr_at(const OptimConfig& o, int64_t step);

class AdamW {
 public:
  explicit AdamW(const Params<float>& p);
  // Clips p.grad to o.clip (global L2 norm over trainable tensors), then updates p.data.
  // Returns the norm before clipping. Reductions run over fixed 64K-element blocks summed in
  // order, so the result does not depend on the thread count.
  double step(Params<float>& p, double lr, const OptimConfig& o, ThreadPool* pool);

  int64_t t = 0;              // updates done (bias correction)
  std::vector<float> m, v;    // first and second moments, like Params::data
};

}  // namespace dsv3::train
