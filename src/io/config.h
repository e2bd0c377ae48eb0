// config.json of a DeepSeek-V2/V3-architecture checkpoint (model_type deepseek_v3 or deepseek_v2),
// with every field the model uses, validated so that nonsense values are rejected up front.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv3 {

struct RopeScaling {  // rope_scaling of type "yarn" (DeepSeek-V3: factor 40 from 4096 to 163840)
  double factor = 1.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  std::string model_type;  // "deepseek_v3" or "deepseek_v2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;      // dense MLP of the first first_k_dense_replace layers
  int64_t moe_intermediate_size = 0;  // each routed expert (shared experts: x n_shared_experts)
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t n_routed_experts = 0;       // 0: every layer dense
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  double routed_scaling_factor = 1.0;
  std::string scoring_func = "softmax";  // "sigmoid" (V3) or "softmax" (V2)
  std::string topk_method = "greedy";    // "noaux_tc" (V3), "group_limited_greedy", "greedy"
  bool norm_topk_prob = false;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  int64_t q_lora_rank = 0;  // 0 when config says null: queries come from q_proj directly
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;  // set only for type "yarn"
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  int64_t num_nextn_predict_layers = 0;
  bool tie_word_embeddings = false;
  // quantization_config: fp8 e4m3 with block scales (weight_block_size = {rows, cols}).
  bool fp8 = false;
  int64_t weight_block_rows = 128, weight_block_cols = 128;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  // Group-limited routing is used when experts are split into groups and the method asks for it.
  bool group_limited() const { return n_group > 1 && topk_method != "greedy"; }
  bool has_score_bias() const { return topk_method == "noaux_tc"; }

  // Parses and validates; `what` names the source in messages. Throws dsv3::Error.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& what);
  static ModelConfig from_file(const std::string& path);
  nlohmann::json to_json() const;
};

}  // namespace dsv3
