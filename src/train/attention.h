// Multi-head Latent Attention for training (DeepSeek-V3 report section 2.1.1), forward and
// backward, in the plain expanded form: k = [k_nope from kv_b_proj, k_pe], v from kv_b_proj.
// It computes the same function as the inference engine's absorbed form (model/mla.h).
// Input x is B sequences of Tn rows each ([B * Tn, dim], row b * Tn + t at position t).
#pragma once
#include <cstdint>
#include <vector>

#include "io/config.h"
#include "model/weights.h"
#include "train/linear.h"
#include "train/ops.h"

namespace dsv3::train {

template <typename T>
struct MLAAct {  // what the backward pass reads, sized by the forward pass
  std::vector<T> q_a, q_rstd, q_n;  // [n, q_lora_rank] wq_a output, [n], after q_norm
  std::vector<T> q;                 // [n, H * qk_head_dim], q_pe part rotated
  std::vector<T> kv, kv_rstd;       // [n, kv_lora_rank + rope dim] wkv_a output, [n]
  std::vector<T> c_n;               // [n, kv_lora_rank] after kv_norm
  std::vector<T> k_pe;              // [n, rope dim] rotated
  std::vector<T> kvb;               // [n, H * (qk_nope_head_dim + v_head_dim)]: k_nope | v per head
  std::vector<T> p;                 // [B, H, Tn, Tn] attention probabilities (causal)
  std::vector<T> o;                 // [n, H * v_head_dim]
};

template <typename T>
void mla_train_forward(const Exec& e, const ModelConfig& c, const RopeTable& rope, const MLAWeights& w, const T* x,
                       int64_t B, int64_t Tn, T* out, MLAAct<T>& a);

// dx += d(out)/dx applied to dout; weight gradients accumulate into g.
template <typename T>
void mla_train_backward(const Exec& e, const ModelConfig& c, const RopeTable& rope, const MLAWeights& w,
                        const MLAWeights& g, const T* x, int64_t B, int64_t Tn, const T* dout, T* dx, MLAAct<T>& a);

}  // namespace dsv3::train
