// Measurements for `dsv3 bench`: model throughput next to the machine's limits, so numbers
// read as a share of a physical bound rather than bare tokens/s.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "io/config.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace dsv3 {

// Read bandwidth in bytes/s: all threads read disjoint parts of a `bytes` buffer (larger than
// the caches, huge-page backed where possible) with the kernels' vector loads, best of `reps`
// passes. The reference for memory-bound decode.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int reps = 3);

// Bytes of weights a forward step reads, in the parts that depend on its rows differently:
// `fixed` is read once per step whatever the rows (attention, norms, dense MLPs, shared
// experts, routers, final norm, lm_head), each MoE layer reads each routed expert it runs
// once (expert[l]: the layer's mean bytes per routed expert, 0 for dense layers), and each
// row reads its embedding row.
// `fixed` is the sum of `head` (final norm and lm_head) and layer[l] (what layer l reads once
// per step: its norms, attention, dense MLP or router and shared experts).
struct StepWeightBytes {
  double fixed = 0, embed_row = 0, head = 0;
  std::vector<double> layer;      // [layer]
  std::vector<double> attention;  // [layer]: layer[l]'s attention half (attn_norm and MLA)
  std::vector<double> expert;  // [layer]
  // One decode token: num_experts_per_tok experts per MoE layer, one embedding row.
  double decode(int64_t experts_per_tok) const;
  // Layer l's share of decode().
  double layer_decode(size_t l, int64_t experts_per_tok) const { return layer[l] + expert[l] * double(experts_per_tok); }
  // A step over `rows` tokens whose MoE layer l ran distinct[l] experts (distinct_experts).
  double step(int64_t rows, std::span<const int64_t> distinct) const;
};
StepWeightBytes step_weight_bytes(const ModelConfig& c, const ModelWeights& w);

// The routed experts each layer of a traced forward pass ran (ForwardTrace::routing), [layer]:
// the number of distinct experts its rows chose, 0 for dense layers.
std::vector<int64_t> distinct_experts(const ForwardTrace& t);

// FLOPs of a prefill of n tokens, counted as the model's matrix products: 2 per active weight
// per token (the routed experts a token uses, num_experts_per_tok per MoE layer), lm_head for
// the last token only, and causal attention (q.k and p.v over n(n+1)/2 pairs per head and
// layer, at qk_head_dim and v_head_dim). Norms, rope, routing and softmax are not counted.
double prefill_flops(const ModelConfig& c, int64_t n);

// FLOPs of one decode token that attends to `positions` cached positions (itself included),
// counted as prefill_flops counts them: 2 per active weight, lm_head included, and q.k and p.v
// over the positions (the expanded form's count, although decode runs the absorbed form).
double decode_flops(const ModelConfig& c, double positions);

}  // namespace dsv3
