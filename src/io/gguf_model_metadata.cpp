#include "io/gguf_model_metadata.h"

#include <cmath>
#include <cstdio>

#include "io/gguf_writer.h"

namespace dsv3 {

namespace {

// llama.cpp's llama_expert_gating_func_type.
constexpr uint32_t kGatingSoftmax = 1, kGatingSigmoid = 2;
// What gguf-py writes as general.quantization_version (GGML_QNT_VERSION).
constexpr uint32_t kQuantizationVersion = 2;

std::string fixed_digits(double v, const char* suffix) {
  const long long whole = std::llround(v);
  const int digits = whole == 0 ? 0 : int(std::to_string(whole).size());
  const int fix = std::max(2 - digits, 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", fix, v, suffix);
  return buf;
}

}  // namespace

std::string gguf_size_label(uint64_t shared_params, uint64_t expert_params, int64_t n_experts) {
  const double n = double(shared_params + (n_experts > 0 ? expert_params : 0));
  const std::string size = n > 1e12 ? fixed_digits(n * 1e-12, "T")
                           : n > 1e9 ? fixed_digits(n * 1e-9, "B")
                           : n > 1e6 ? fixed_digits(n * 1e-6, "M")
                                     : fixed_digits(n * 1e-3, "K");
  return n_experts > 0 ? std::to_string(n_experts) + "x" + size : size;
}

void add_deepseek2_metadata(GgufWriter& w, const ModelConfig& c, const GgufModelInfo& info) {
  const std::string a = "deepseek2.";
  w.set_string("general.architecture", "deepseek2");
  w.set_string("general.type", "model");
  if (!info.name.empty()) w.set_string("general.name", info.name);
  if (!info.size_label.empty()) w.set_string("general.size_label", info.size_label);
  w.set_u32(a + "block_count", uint32_t(c.num_hidden_layers + (info.mtp ? c.num_nextn_predict_layers : 0)));
  w.set_u32(a + "context_length", uint32_t(c.max_position_embeddings));
  w.set_u32(a + "embedding_length", uint32_t(c.hidden_size));
  w.set_u32(a + "feed_forward_length", uint32_t(c.intermediate_size));
  w.set_u32(a + "attention.head_count", uint32_t(c.num_attention_heads));
  w.set_u32(a + "attention.head_count_kv", 1);  // MLA is stored as MQA with one latent "head"
  if (c.rope_scaling) {
    const RopeScaling& y = *c.rope_scaling;
    w.set_string(a + "rope.scaling.type", "yarn");
    w.set_f32(a + "rope.scaling.factor", float(y.factor));
    w.set_u32(a + "rope.scaling.original_context_length", uint32_t(y.original_max_position_embeddings));
    w.set_f32(a + "rope.scaling.yarn_beta_fast", float(y.beta_fast));
    w.set_f32(a + "rope.scaling.yarn_beta_slow", float(y.beta_slow));
  }
  w.set_f32(a + "rope.freq_base", float(c.rope_theta));
  w.set_f32(a + "attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
  if (c.n_routed_experts > 0) {
    w.set_u32(a + "expert_count", uint32_t(c.n_routed_experts));
    w.set_u32(a + "expert_used_count", uint32_t(c.num_experts_per_tok));
    w.set_u32(a + "expert_group_count", uint32_t(c.n_group));
    w.set_u32(a + "expert_group_used_count", uint32_t(c.topk_group));
  }
  w.set_u32(a + "expert_gating_func", c.scoring_func == "sigmoid" ? kGatingSigmoid : kGatingSoftmax);
  w.set_u32("general.file_type", uint32_t(info.file_type));
  w.set_u32(a + "leading_dense_block_count",
            uint32_t(c.n_routed_experts > 0 ? c.first_k_dense_replace : c.num_hidden_layers));
  w.set_u32(a + "vocab_size", uint32_t(c.vocab_size));
  if (c.q_lora_rank > 0) w.set_u32(a + "attention.q_lora_rank", uint32_t(c.q_lora_rank));
  w.set_u32(a + "attention.kv_lora_rank", uint32_t(c.kv_lora_rank));
  // MLA as MQA over the latent: keys are [latent, rope], values the latent; the *_mla lengths
  // are the per-head sizes after the up-projections.
  w.set_u32(a + "attention.key_length", uint32_t(c.kv_lora_rank + c.qk_rope_head_dim));
  w.set_u32(a + "attention.value_length", uint32_t(c.kv_lora_rank));
  w.set_u32(a + "attention.key_length_mla", uint32_t(c.qk_head_dim()));
  w.set_u32(a + "attention.value_length_mla", uint32_t(c.v_head_dim));
  w.set_u32(a + "expert_feed_forward_length",
            uint32_t(c.n_routed_experts > 0 ? c.moe_intermediate_size : c.intermediate_size));
  w.set_u32(a + "expert_shared_count", uint32_t(c.n_shared_experts));
  w.set_f32(a + "expert_weights_scale", float(c.routed_scaling_factor));
  if (c.norm_topk_prob) w.set_bool(a + "expert_weights_norm", true);
  w.set_u32(a + "rope.dimension_count", uint32_t(c.qk_rope_head_dim));
  // The converter stores 0.1 * mscale_all_dim and llama.cpp divides it back out
  // ([TAG_DEEPSEEK2_YARN_LOG_MUL_FIX] in both).
  if (c.rope_scaling) w.set_f32(a + "rope.scaling.yarn_log_multiplier", float(0.1 * c.rope_scaling->mscale_all_dim));
  if (info.mtp && c.num_nextn_predict_layers > 0)
    w.set_u32(a + "nextn_predict_layers", uint32_t(c.num_nextn_predict_layers));
  w.set_u32("general.quantization_version", kQuantizationVersion);
}

}  // namespace dsv3
