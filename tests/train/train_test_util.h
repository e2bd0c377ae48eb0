// Shared pieces of the trainer tests: a tiny DeepSeek-V3 config that still has every part
// (q and kv low-rank, dense + MoE layers, group-limited routing, shared expert, one MTP
// module), and a finite-difference gradient checker.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "io/config.h"
#include "train/rng.h"

namespace dsv3::train::testing {

inline ModelConfig tiny_config(int64_t vocab = 37) {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.moe_intermediate_size = 8;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.n_routed_experts = 8;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 2;
  c.n_group = 4;
  c.topk_group = 2;
  c.routed_scaling_factor = 2.5;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.norm_topk_prob = true;
  c.first_k_dense_replace = 1;
  c.q_lora_rank = 12;
  c.kv_lora_rank = 10;
  c.qk_nope_head_dim = 4;
  c.qk_rope_head_dim = 4;
  c.v_head_dim = 6;
  c.max_position_embeddings = 64;
  c.num_nextn_predict_layers = 1;
  c.bos_token_id = 0;
  c.eos_token_ids = {1};
  return c;
}

inline std::vector<double> random_vec(size_t n, uint64_t seed, double sigma = 1.0) {
  Rng r(seed);
  std::vector<double> v(n);
  for (double& x : v) x = r.normal() * sigma;
  return v;
}

// Compares analytic gradients `grad` of f with central differences at up to `samples`
// entries of x (all when fewer), relative error 1e-5 (absolute 1e-8 near zero).
inline void check_grad(const char* what, double* x, const double* grad, size_t n, const std::function<double()>& f,
                       size_t samples = 40, double h = 1e-6) {
  Rng r(n * 7919 + 1);
  const size_t count = std::min(n, samples);
  for (size_t s = 0; s < count; ++s) {
    const size_t i = n <= samples ? s : size_t(r.below(n));
    const double old = x[i];
    x[i] = old + h;
    const double fp = f();
    x[i] = old - h;
    const double fm = f();
    x[i] = old;
    const double num = (fp - fm) / (2 * h);
    const double tol = 1e-8 + 1e-5 * std::max(std::fabs(num), std::fabs(grad[i]));
    ASSERT_NEAR(grad[i], num, tol) << what << " [" << i << "]";
  }
}

}  // namespace dsv3::train::testing
