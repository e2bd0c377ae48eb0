// Feed-forward parts of a DeepSeek-V3 block: the dense SwiGLU MLP and DeepSeekMoE
// (V3 report section 2.1.2; model.py classes MLP, Gate, Expert, MoE).
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "io/config.h"
#include "model/weights.h"

namespace dsv3 {

// out[n, dim] = w2(silu(w1 x) * w3 x) for n tokens.
void mlp_forward(const MLPWeights& w, const float* x, int64_t n, float* out, ThreadPool& pool);

struct Routing {
  std::vector<int32_t> experts;  // num_experts_per_tok indices, in the order the top-k picked them
  std::vector<float> weights;    // their weights (unbiased scores, normalised, x routed_scaling_factor)
};

// Expert selection for one token from its router logits (model.py Gate.forward):
// scores = sigmoid (V3) or softmax (V2) of the logits; `bias` (e_score_correction_bias, may be
// null) is added for selection only; with group-limited routing each group scores the sum of
// its top-2 biased scores (max when there is no bias), the topk_group best groups are kept and
// the experts of all other groups are excluded (-inf, as model.py); num_experts_per_tok experts
// are taken by biased score; their weights come from the unbiased scores, normalised when
// norm_topk_prob, then multiplied by routed_scaling_factor.
Routing route(const ModelConfig& c, const float* logits, const float* bias);

// DeepSeekMoE for n tokens: shared experts plus the routed experts of each token. Tokens are
// grouped by expert so each selected expert runs once per call on all its tokens. With a
// rank's share of the weights (model/partition.h), routing is computed in full but only the
// experts the weights hold run, and `out` is this rank's partial sum (with its share of the
// shared experts), to be summed over ranks.
// If `routing_out` is non-null it receives each token's Routing (for tests and debugging).
void moe_forward(const ModelConfig& c, const MoEWeights& w, const float* x, int64_t n, float* out, ThreadPool& pool,
                 std::vector<Routing>* routing_out = nullptr);

}  // namespace dsv3
