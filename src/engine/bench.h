// Measurements for `dsv3 bench`: model throughput next to the machine's limits, so numbers
// read as a share of a physical bound rather than bare tokens/s.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "io/config.h"
#include "model/weights.h"

namespace dsv3 {

// Read bandwidth in bytes/s: all threads read disjoint parts of a `bytes` buffer (larger than
// the caches, huge-page backed where possible) with the kernels' vector loads, best of `reps`
// passes. The reference for memory-bound decode.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int reps = 3);

// Bytes of weights one decode token reads: everything but the routed experts, plus
// num_experts_per_tok average routed experts per MoE layer, plus one embedding row.
double decode_weight_bytes_per_token(const ModelConfig& c, const ModelWeights& w);

// FLOPs of a prefill of n tokens, counted as the model's matrix products: 2 per active weight
// per token (the routed experts a token uses, num_experts_per_tok per MoE layer), lm_head for
// the last token only, and causal attention (q.k and p.v over n(n+1)/2 pairs per head and
// layer, at qk_head_dim and v_head_dim). Norms, rope, routing and softmax are not counted.
double prefill_flops(const ModelConfig& c, int64_t n);

}  // namespace dsv3
