#include "model/params.h"

#include "model/weights.h"

namespace dsv3 {

ParamCounts count_params(const ModelConfig& c) {
  ParamCounts p;
  const int64_t routed_per_layer_active = c.num_experts_per_tok;
  visit_tensors(c, /*include_mtp=*/true, nullptr, [&](const TensorSpec& s) {
    const int64_t n = s.shape.numel();
    if (s.mtp) {
      p.mtp_total += n;
      // embed_tokens and shared_head.head duplicate the main embedding and lm_head.
      if (s.kind != TensorKind::Embedding && s.kind != TensorKind::Head) p.mtp += n;
      return;
    }
    p.total += n;
    if (s.expert < 0) p.active += n;  // routed experts are added below, k per MoE layer
  });
  p.routed_expert = 3 * c.hidden_size * c.moe_intermediate_size;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe_layer(l)) p.active += routed_per_layer_active * p.routed_expert;
  p.kv_bytes_per_token_bf16 = c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 2;
  return p;
}

}  // namespace dsv3
