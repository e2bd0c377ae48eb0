#include "io/config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {

namespace {

using nlohmann::json;

struct Reader {
  const json& j;
  const std::string& what;

  bool present(const char* key) const { return j.contains(key) && !j[key].is_null(); }

  int64_t integer(const char* key, std::optional<int64_t> dflt = std::nullopt) const {
    if (!present(key)) {
      DSV3_CHECK(dflt.has_value(), what, ": missing required field '", key, "'");
      return *dflt;
    }
    const json& v = j[key];
    if (v.is_number_unsigned()) {
      DSV3_CHECK(v.get<uint64_t>() <= uint64_t(INT64_MAX), what, ": field '", key, "' is out of range: ", v.dump());
      return int64_t(v.get<uint64_t>());
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    // Whole floats (256.0) are integers too; range-checked before the conversion, which is
    // undefined behaviour for values outside int64 (1e300) and for NaN.
    const double d = v.is_number_float() ? v.get<double>() : 0.5;
    DSV3_CHECK(d == std::trunc(d) && std::fabs(d) < 9.2e18, what, ": field '", key,
               "' must be an integer, got ", v.dump());
    return int64_t(d);
  }
  double number(const char* key, std::optional<double> dflt = std::nullopt) const {
    if (!present(key)) {
      DSV3_CHECK(dflt.has_value(), what, ": missing required field '", key, "'");
      return *dflt;
    }
    DSV3_CHECK(j[key].is_number(), what, ": field '", key, "' must be a number, got ", j[key].dump());
    return j[key].get<double>();
  }
  std::string string(const char* key, std::optional<std::string> dflt = std::nullopt) const {
    if (!present(key)) {
      DSV3_CHECK(dflt.has_value(), what, ": missing required field '", key, "'");
      return *dflt;
    }
    DSV3_CHECK(j[key].is_string(), what, ": field '", key, "' must be a string, got ", j[key].dump());
    return j[key].get<std::string>();
  }
  bool boolean(const char* key, bool dflt) const {
    if (!present(key)) return dflt;
    DSV3_CHECK(j[key].is_boolean(), what, ": field '", key, "' must be true or false, got ", j[key].dump());
    return j[key].get<bool>();
  }
};

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& what) {
  DSV3_CHECK(j.is_object(), what, ": config is not a JSON object");
  Reader r{j, what};
  ModelConfig c;
  c.model_type = r.string("model_type");
  DSV3_CHECK(c.model_type == "deepseek_v3" || c.model_type == "deepseek_v2", what,
             ": model_type '", c.model_type, "' is not supported (expected deepseek_v3 or deepseek_v2)");
  const bool v3 = c.model_type == "deepseek_v3";
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.intermediate_size = r.integer("intermediate_size");
  c.num_hidden_layers = r.integer("num_hidden_layers");
  c.num_attention_heads = r.integer("num_attention_heads");
  c.n_routed_experts = r.integer("n_routed_experts", 0);
  c.moe_intermediate_size = r.integer("moe_intermediate_size", c.n_routed_experts ? std::nullopt : std::optional<int64_t>(0));
  c.n_shared_experts = r.integer("n_shared_experts", 0);
  c.num_experts_per_tok = r.integer("num_experts_per_tok", c.n_routed_experts ? std::nullopt : std::optional<int64_t>(0));
  c.n_group = r.integer("n_group", 1);
  c.topk_group = r.integer("topk_group", 1);
  c.routed_scaling_factor = r.number("routed_scaling_factor", 1.0);
  c.scoring_func = r.string("scoring_func", v3 ? "sigmoid" : "softmax");
  c.topk_method = r.string("topk_method", v3 ? "noaux_tc" : "greedy");
  c.norm_topk_prob = r.boolean("norm_topk_prob", false);
  c.first_k_dense_replace = r.integer("first_k_dense_replace", 0);
  c.moe_layer_freq = r.integer("moe_layer_freq", 1);
  c.q_lora_rank = r.integer("q_lora_rank", 0);
  c.kv_lora_rank = r.integer("kv_lora_rank");
  c.qk_nope_head_dim = r.integer("qk_nope_head_dim");
  c.qk_rope_head_dim = r.integer("qk_rope_head_dim");
  c.v_head_dim = r.integer("v_head_dim");
  c.rope_theta = r.number("rope_theta", 10000.0);
  c.max_position_embeddings = r.integer("max_position_embeddings");
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  c.bos_token_id = r.integer("bos_token_id", -1);
  if (r.present("eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_array()) {
      for (const auto& x : e) {
        DSV3_CHECK(x.is_number_integer(), what, ": eos_token_id entries must be integers");
        c.eos_token_ids.push_back(x.get<int64_t>());
      }
    } else {
      c.eos_token_ids.push_back(r.integer("eos_token_id"));
    }
  }
  c.num_nextn_predict_layers = r.integer("num_nextn_predict_layers", 0);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);

  if (r.present("rope_scaling")) {
    const json& rs = j["rope_scaling"];
    DSV3_CHECK(rs.is_object(), what, ": rope_scaling must be an object or null");
    Reader rr{rs, what};
    std::string type = rs.contains("type") ? rr.string("type") : rr.string("rope_type", "");
    DSV3_CHECK(type == "yarn", what, ": rope_scaling type '", type, "' is not supported (only yarn)");
    RopeScaling y;
    y.factor = rr.number("factor");
    y.original_max_position_embeddings = rr.integer("original_max_position_embeddings");
    y.beta_fast = rr.number("beta_fast", 32.0);
    y.beta_slow = rr.number("beta_slow", 1.0);
    y.mscale = rr.number("mscale", 1.0);
    y.mscale_all_dim = rr.number("mscale_all_dim", 0.0);
    DSV3_CHECK(y.factor >= 1.0, what, ": rope_scaling.factor must be >= 1, got ", y.factor);
    DSV3_CHECK(y.original_max_position_embeddings > 0, what,
               ": rope_scaling.original_max_position_embeddings must be positive");
    DSV3_CHECK(y.beta_fast > 0 && y.beta_slow > 0, what, ": rope_scaling beta_fast/beta_slow must be positive");
    c.rope_scaling = y;
  }

  if (r.present("quantization_config")) {
    const json& q = j["quantization_config"];
    DSV3_CHECK(q.is_object(), what, ": quantization_config must be an object");
    Reader qr{q, what};
    const std::string method = qr.string("quant_method");
    DSV3_CHECK(method == "fp8", what, ": quantization_config.quant_method '", method, "' is not supported (only fp8)");
    const std::string fmt = qr.string("fmt", "e4m3");
    DSV3_CHECK(fmt == "e4m3", what, ": quantization_config.fmt '", fmt, "' is not supported (only e4m3)");
    c.fp8 = true;
    if (qr.present("weight_block_size")) {
      const json& b = q["weight_block_size"];
      DSV3_CHECK(b.is_array() && b.size() == 2 && b[0].is_number_integer() && b[1].is_number_integer() &&
                     b[0].get<int64_t>() > 0 && b[1].get<int64_t>() > 0,
                 what, ": quantization_config.weight_block_size must be two positive integers");
      c.weight_block_rows = b[0].get<int64_t>();
      c.weight_block_cols = b[1].get<int64_t>();
    }
  }

  // Sanity: every count positive where the model needs it, and consistent with each other.
  auto positive = [&](int64_t v, const char* name) {
    DSV3_CHECK(v > 0, what, ": ", name, " must be positive, got ", v);
  };
  auto non_negative = [&](int64_t v, const char* name) {
    DSV3_CHECK(v >= 0, what, ": ", name, " must be >= 0, got ", v);
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.num_hidden_layers, "num_hidden_layers");
  positive(c.num_attention_heads, "num_attention_heads");
  positive(c.kv_lora_rank, "kv_lora_rank");
  non_negative(c.qk_nope_head_dim, "qk_nope_head_dim");
  positive(c.qk_rope_head_dim, "qk_rope_head_dim");
  positive(c.v_head_dim, "v_head_dim");
  positive(c.max_position_embeddings, "max_position_embeddings");
  non_negative(c.q_lora_rank, "q_lora_rank");
  non_negative(c.n_routed_experts, "n_routed_experts");
  non_negative(c.n_shared_experts, "n_shared_experts");
  non_negative(c.first_k_dense_replace, "first_k_dense_replace");
  non_negative(c.num_nextn_predict_layers, "num_nextn_predict_layers");
  positive(c.moe_layer_freq, "moe_layer_freq");
  // Upper bounds, 8-16x above the largest released models (V3: hidden 7168, 61 layers, 256
  // experts; Kimi-K2: 384 experts): low enough that no tensor size or parameter count can
  // overflow int64 and no loop over layers and experts runs for hours.
  auto at_most = [&](int64_t v, int64_t limit, const char* name) {
    DSV3_CHECK(v <= limit, what, ": ", name, " (", v, ") is implausibly large (at most ", limit, ")");
  };
  at_most(c.hidden_size, 1 << 16, "hidden_size");
  at_most(c.intermediate_size, 1 << 18, "intermediate_size");
  at_most(c.moe_intermediate_size, 1 << 16, "moe_intermediate_size");
  at_most(c.num_hidden_layers, 1 << 10, "num_hidden_layers");
  at_most(c.num_nextn_predict_layers, 1 << 4, "num_nextn_predict_layers");
  at_most(c.num_attention_heads, 1 << 10, "num_attention_heads");
  at_most(c.n_routed_experts, 1 << 12, "n_routed_experts");
  at_most(c.n_shared_experts, 1 << 4, "n_shared_experts");
  at_most(c.q_lora_rank, 1 << 16, "q_lora_rank");
  at_most(c.kv_lora_rank, 1 << 16, "kv_lora_rank");
  at_most(c.qk_nope_head_dim, 1 << 12, "qk_nope_head_dim");
  at_most(c.qk_rope_head_dim, 1 << 12, "qk_rope_head_dim");
  at_most(c.v_head_dim, 1 << 12, "v_head_dim");
  DSV3_CHECK(c.qk_rope_head_dim % 2 == 0, what, ": qk_rope_head_dim must be even (rope rotates pairs), got ",
             c.qk_rope_head_dim);
  DSV3_CHECK(c.rms_norm_eps > 0, what, ": rms_norm_eps must be positive");
  DSV3_CHECK(c.rope_theta > 0, what, ": rope_theta must be positive");
  const bool any_dense = c.n_routed_experts == 0 || c.first_k_dense_replace > 0 || c.moe_layer_freq > 1;
  if (any_dense) positive(c.intermediate_size, "intermediate_size");
  if (c.n_routed_experts > 0) {
    positive(c.moe_intermediate_size, "moe_intermediate_size");
    positive(c.num_experts_per_tok, "num_experts_per_tok");
    positive(c.n_group, "n_group");
    positive(c.topk_group, "topk_group");
    DSV3_CHECK(c.num_experts_per_tok <= c.n_routed_experts, what, ": num_experts_per_tok (",
               c.num_experts_per_tok, ") exceeds n_routed_experts (", c.n_routed_experts, ")");
    DSV3_CHECK(c.topk_group <= c.n_group, what, ": topk_group (", c.topk_group, ") exceeds n_group (",
               c.n_group, ")");
    DSV3_CHECK(c.n_routed_experts % c.n_group == 0, what, ": n_routed_experts (", c.n_routed_experts,
               ") is not divisible by n_group (", c.n_group, ")");
    DSV3_CHECK(c.scoring_func == "sigmoid" || c.scoring_func == "softmax", what, ": scoring_func '",
               c.scoring_func, "' is not supported (sigmoid or softmax)");
    DSV3_CHECK(c.topk_method == "noaux_tc" || c.topk_method == "group_limited_greedy" || c.topk_method == "greedy",
               what, ": topk_method '", c.topk_method, "' is not supported (noaux_tc, group_limited_greedy, greedy)");
    if (c.group_limited()) {
      const int64_t per_group = c.n_routed_experts / c.n_group;
      DSV3_CHECK(c.topk_group * per_group >= c.num_experts_per_tok, what, ": topk_group (", c.topk_group,
                 ") groups of ", per_group, " experts cannot supply num_experts_per_tok (",
                 c.num_experts_per_tok, ") experts");
      if (c.has_score_bias())
        DSV3_CHECK(per_group >= 2, what, ": noaux_tc group scores need at least 2 experts per group");
    }
    DSV3_CHECK(c.routed_scaling_factor > 0, what, ": routed_scaling_factor must be positive");
  }
  DSV3_CHECK(c.vocab_size < (int64_t(1) << 31), what, ": vocab_size too large");
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::ifstream f(path);
  DSV3_CHECK(f.good(), path, ": cannot open");
  json j;
  try {
    j = json::parse(f);
  } catch (const json::exception& e) {
    fail(path, ": malformed JSON: ", e.what());
  }
  return from_json(j, path);
}

json ModelConfig::to_json() const {
  json j;
  j["architectures"] = {model_type == "deepseek_v3" ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["moe_intermediate_size"] = moe_intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_attention_heads;
  j["n_routed_experts"] = n_routed_experts;
  j["n_shared_experts"] = n_shared_experts;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["n_group"] = n_group;
  j["topk_group"] = topk_group;
  j["routed_scaling_factor"] = routed_scaling_factor;
  j["scoring_func"] = scoring_func;
  j["topk_method"] = topk_method;
  j["norm_topk_prob"] = norm_topk_prob;
  j["first_k_dense_replace"] = first_k_dense_replace;
  j["moe_layer_freq"] = moe_layer_freq;
  j["q_lora_rank"] = q_lora_rank > 0 ? json(q_lora_rank) : json(nullptr);
  j["kv_lora_rank"] = kv_lora_rank;
  j["qk_nope_head_dim"] = qk_nope_head_dim;
  j["qk_rope_head_dim"] = qk_rope_head_dim;
  j["v_head_dim"] = v_head_dim;
  j["rope_theta"] = rope_theta;
  if (rope_scaling) {
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", rope_scaling->factor},
                         {"original_max_position_embeddings", rope_scaling->original_max_position_embeddings},
                         {"beta_fast", rope_scaling->beta_fast},
                         {"beta_slow", rope_scaling->beta_slow},
                         {"mscale", rope_scaling->mscale},
                         {"mscale_all_dim", rope_scaling->mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["hidden_act"] = "silu";
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  j["num_nextn_predict_layers"] = num_nextn_predict_layers;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = "bfloat16";
  if (fp8)
    j["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {weight_block_rows, weight_block_cols}}};
  return j;
}

}  // namespace dsv3
