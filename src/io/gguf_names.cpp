#include "io/gguf_names.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf_tensor_names.h"

namespace dsv3::gguf {

namespace {

// llama.cpp's enum llama_expert_gating_func_type.
constexpr int64_t kGatingSoftmax = 1, kGatingSigmoid = 2;
// What gguf-py writes as general.quantization_version (GGML_QNT_VERSION).
constexpr uint64_t kQuantizationVersion = 2;
// deepseek2's yarn_log_multiplier is 0.1 x mscale_all_dim (convert_hf_to_gguf.py,
// TAG_DEEPSEEK2_YARN_LOG_MUL_FIX).
constexpr double kYarnLogMulPerMscale = 0.1;

}  // namespace

std::optional<TensorName> tensor_name(std::string_view hf) {
  const auto m = match_hf_tensor_name(hf);
  if (!m) return std::nullopt;
  return TensorName{gguf_tensor_name(*m->row, m->layer), m->row->layout == GgufLayout::Experts ? m->expert : -1};
}

KvBSplit kv_b_split_names(int64_t layer) {
  KvBSplit split;
  for (const GgufTensorName& row : gguf_tensor_names()) {
    if (row.layout == GgufLayout::KvBKeys) split.k_b = gguf_tensor_name(row, layer);
    if (row.layout == GgufLayout::KvBValues) split.v_b = gguf_tensor_name(row, layer);
  }
  return split;
}

std::string key(std::string_view suffix) { return std::string(kArch) + "." + std::string(suffix); }

ModelConfig config_from_metadata(const GgufMetadata& md, bool has_output, bool has_score_bias) {
  const std::string& what = md.what();
  const std::string arch = md.string("general.architecture");
  DSV3_CHECK(arch == kArch, what, ": general.architecture '", arch, "' is not supported (only ", kArch,
             ", DeepSeek-V2/V3)");
  auto k = [](const char* s) { return key(s); };
  // The HF config.json this metadata stands for, validated by the same code as config.json.
  nlohmann::json j;
  const int64_t gating = md.integer(k("expert_gating_func"), kGatingSoftmax);  // absent in V2 files: softmax
  DSV3_CHECK(gating == kGatingSoftmax || gating == kGatingSigmoid, what, ": metadata '", k("expert_gating_func"),
             "' is ", gating, " (supported: 1 softmax, 2 sigmoid)");
  const bool sigmoid = gating == kGatingSigmoid;
  j["model_type"] = sigmoid ? "deepseek_v3" : "deepseek_v2";
  const int64_t n_vocab = md.has(k("vocab_size")) ? md.integer(k("vocab_size"))
                          : md.has("tokenizer.ggml.tokens") ? int64_t(md.find("tokenizer.ggml.tokens")->array.size())
                                                            : md.integer(k("vocab_size"));
  j["vocab_size"] = n_vocab;
  j["hidden_size"] = md.integer(k("embedding_length"));
  j["intermediate_size"] = md.integer(k("feed_forward_length"));
  const int64_t blocks = md.integer(k("block_count")), nextn = md.integer(k("nextn_predict_layers"), 0);
  DSV3_CHECK(nextn >= 0 && nextn < blocks, what, ": metadata '", k("nextn_predict_layers"), "' (", nextn,
             ") must be less than '", k("block_count"), "' (", blocks, "), which counts the MTP layers too");
  j["num_hidden_layers"] = blocks - nextn;
  j["num_attention_heads"] = md.integer(k("attention.head_count"));
  j["max_position_embeddings"] = md.integer(k("context_length"));
  j["rms_norm_eps"] = md.number(k("attention.layer_norm_rms_epsilon"));
  j["rope_theta"] = md.number(k("rope.freq_base"), 10000.0);
  j["n_routed_experts"] = md.integer(k("expert_count"), 0);
  j["moe_intermediate_size"] = md.integer(k("expert_feed_forward_length"), 0);
  j["n_shared_experts"] = md.integer(k("expert_shared_count"), 0);
  j["num_experts_per_tok"] = md.integer(k("expert_used_count"), 0);
  const int64_t n_group = md.integer(k("expert_group_count"), 1);
  j["n_group"] = n_group;
  j["topk_group"] = md.integer(k("expert_group_used_count"), 1);
  j["routed_scaling_factor"] = md.number(k("expert_weights_scale"), 1.0);
  j["norm_topk_prob"] = md.boolean(k("expert_weights_norm"), false);
  j["scoring_func"] = sigmoid ? "sigmoid" : "softmax";
  // V3 selects by biased score (noaux_tc) when the file has the bias; V2 limits groups when
  // there are several (group_limited_greedy), V2-Lite has one group (greedy).
  j["topk_method"] = has_score_bias ? "noaux_tc" : n_group > 1 ? "group_limited_greedy" : "greedy";
  j["first_k_dense_replace"] = md.integer(k("leading_dense_block_count"), 0);
  j["moe_layer_freq"] = 1;
  const int64_t q_lora = md.integer(k("attention.q_lora_rank"), 0);
  j["q_lora_rank"] = q_lora > 0 ? nlohmann::json(q_lora) : nlohmann::json(nullptr);
  const int64_t kv_lora = md.integer(k("attention.kv_lora_rank"));
  j["kv_lora_rank"] = kv_lora;
  const int64_t rope_dim = md.integer(k("rope.dimension_count"));
  j["qk_rope_head_dim"] = rope_dim;
  // Two conventions. Files with MLA support (llama.cpp, 2025 on) store attention as MQA over the
  // latent: key_length = kv_lora_rank + rope, value_length = kv_lora_rank, and the per-head
  // sizes in key_length_mla / value_length_mla. Older files have only the per-head sizes, under
  // key_length / value_length.
  int64_t head_k = 0, head_v = 0;
  if (md.has(k("attention.key_length_mla"))) {
    head_k = md.integer(k("attention.key_length_mla"));
    head_v = md.integer(k("attention.value_length_mla"));
    const int64_t mqa_k = md.integer(k("attention.key_length"), kv_lora + rope_dim);
    const int64_t mqa_v = md.integer(k("attention.value_length"), kv_lora);
    DSV3_CHECK(mqa_k == kv_lora + rope_dim && mqa_v == kv_lora, what, ": metadata '", k("attention.key_length"),
               "' (", mqa_k, ") and '", k("attention.value_length"), "' (", mqa_v,
               ") must be kv_lora_rank + rope.dimension_count and kv_lora_rank beside key_length_mla");
  } else {
    head_k = md.integer(k("attention.key_length"));
    head_v = md.integer(k("attention.value_length"));
  }
  DSV3_CHECK(head_k >= rope_dim, what, ": key length per head (", head_k, ") is less than rope.dimension_count (",
             rope_dim, ")");
  j["qk_nope_head_dim"] = head_k - rope_dim;
  j["v_head_dim"] = head_v;
  j["num_nextn_predict_layers"] = nextn;
  j["tie_word_embeddings"] = !has_output;
  if (md.has("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = md.integer("tokenizer.ggml.bos_token_id");
  if (md.has("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = md.integer("tokenizer.ggml.eos_token_id");

  const std::string scaling = md.string(k("rope.scaling.type"), "none");
  if (scaling == "yarn") {
    const double log_mul = md.number(k("rope.scaling.yarn_log_multiplier"), 0.0);
    // llama.cpp's deepseek2 graph scales attention by (1 + log_mul ln factor)^2 and undoes YaRN's
    // own rotation magnitude: HF's mscale == mscale_all_dim, as in every DeepSeek release.
    // Stored as f32: rounded back to float precision, 0.1f gives mscale_all_dim 1 exactly.
    const double mscale_all_dim = double(float(log_mul / kYarnLogMulPerMscale));
    j["rope_scaling"] = {
        {"type", "yarn"},
        {"factor", md.number(k("rope.scaling.factor"))},
        {"original_max_position_embeddings", md.integer(k("rope.scaling.original_context_length"))},
        {"beta_fast", md.number(k("rope.scaling.yarn_beta_fast"), 32.0)},
        {"beta_slow", md.number(k("rope.scaling.yarn_beta_slow"), 1.0)},
        {"mscale", mscale_all_dim},
        {"mscale_all_dim", mscale_all_dim},
    };
  } else {
    DSV3_CHECK(scaling == "none", what, ": metadata '", k("rope.scaling.type"), "' is '", scaling,
               "' (supported: yarn, none)");
  }
  return ModelConfig::from_json(j, what);
}

ModelConfig config_from_gguf(const GgufModel& g) {
  bool has_bias = false;
  for (const auto& [name, loc] : g.tensors())
    has_bias = has_bias || name.find(".exp_probs_b.bias") != std::string::npos;
  return config_from_metadata(g.metadata(), g.has("output.weight"), has_bias);
}

std::vector<std::pair<std::string, GgufValue>> metadata_from_config(const ModelConfig& c, const ModelInfo& info) {
  std::vector<std::pair<std::string, GgufValue>> out;
  auto put = [&](std::string name, GgufValueType type, GgufValue::Scalar v) {
    GgufValue x;
    x.type = type;
    x.scalar = std::move(v);
    out.emplace_back(std::move(name), std::move(x));
  };
  auto u32 = [&](std::string_view suffix, int64_t v) { put(key(suffix), GgufValueType::U32, uint64_t(v)); };
  auto f32 = [&](std::string_view suffix, double v) { put(key(suffix), GgufValueType::F32, double(float(v))); };
  auto str = [&](std::string name, std::string v) { put(std::move(name), GgufValueType::STRING, std::move(v)); };
  const bool moe = c.n_routed_experts > 0, mtp = info.mtp && c.num_nextn_predict_layers > 0;
  str("general.architecture", std::string(kArch));
  str("general.type", "model");
  if (!info.name.empty()) str("general.name", info.name);
  if (!info.size_label.empty()) str("general.size_label", info.size_label);
  u32("block_count", c.num_hidden_layers + (mtp ? c.num_nextn_predict_layers : 0));
  u32("context_length", c.max_position_embeddings);
  u32("embedding_length", c.hidden_size);
  u32("feed_forward_length", c.intermediate_size);
  u32("attention.head_count", c.num_attention_heads);
  u32("attention.head_count_kv", 1);  // MLA is stored as MQA with one latent "head"
  if (c.rope_scaling) {
    const RopeScaling& y = *c.rope_scaling;
    str(key("rope.scaling.type"), "yarn");
    f32("rope.scaling.factor", y.factor);
    u32("rope.scaling.original_context_length", y.original_max_position_embeddings);
    f32("rope.scaling.yarn_beta_fast", y.beta_fast);
    f32("rope.scaling.yarn_beta_slow", y.beta_slow);
  }
  f32("rope.freq_base", c.rope_theta);
  f32("attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  if (moe) {
    u32("expert_count", c.n_routed_experts);
    u32("expert_used_count", c.num_experts_per_tok);
    u32("expert_group_count", c.n_group);
    u32("expert_group_used_count", c.topk_group);
  }
  u32("expert_gating_func", c.scoring_func == "sigmoid" ? kGatingSigmoid : kGatingSoftmax);
  put("general.file_type", GgufValueType::U32, uint64_t(info.file_type));
  u32("leading_dense_block_count", moe ? c.first_k_dense_replace : c.num_hidden_layers);
  u32("vocab_size", c.vocab_size);
  if (c.q_lora_rank > 0) u32("attention.q_lora_rank", c.q_lora_rank);
  u32("attention.kv_lora_rank", c.kv_lora_rank);
  // MLA as MQA over the latent: keys are [latent, rope], values the latent; the *_mla lengths
  // are the per-head sizes after the up-projections.
  u32("attention.key_length", c.kv_lora_rank + c.qk_rope_head_dim);
  u32("attention.value_length", c.kv_lora_rank);
  u32("attention.key_length_mla", c.qk_head_dim());
  u32("attention.value_length_mla", c.v_head_dim);
  u32("expert_feed_forward_length", moe ? c.moe_intermediate_size : c.intermediate_size);
  u32("expert_shared_count", c.n_shared_experts);
  f32("expert_weights_scale", c.routed_scaling_factor);
  if (c.norm_topk_prob) put(key("expert_weights_norm"), GgufValueType::BOOL, true);
  u32("rope.dimension_count", c.qk_rope_head_dim);
  if (c.rope_scaling) f32("rope.scaling.yarn_log_multiplier", kYarnLogMulPerMscale * c.rope_scaling->mscale_all_dim);
  if (mtp) u32("nextn_predict_layers", c.num_nextn_predict_layers);
  put("general.quantization_version", GgufValueType::U32, uint64_t(kQuantizationVersion));
  return out;
}

}  // namespace dsv3::gguf
