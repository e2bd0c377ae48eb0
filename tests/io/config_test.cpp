// config.json: the golden and other real-world shapes parse; a missing field, a wrong type or a
// nonsense value is one Error naming the file and the field.
#include "io/config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io_test_util.h"

namespace dsv3 {
namespace {

using testing::error_of;
using testing::says;
using testing::TempDir;
using testing::write_bytes;
using json = nlohmann::json;

const std::string kGoldenConfig = std::string(DSV3_TESTDATA_DIR) + "/golden/tiny-v3/config.json";

json golden() { return json::parse(testing::read_bytes(kGoldenConfig)); }

std::string parse_error(const json& j) {
  return error_of([&] { ModelConfig::from_json(j, "ckpt/config.json"); });
}

TEST(Config, GoldenParses) {
  const ModelConfig c = ModelConfig::from_file(kGoldenConfig);
  EXPECT_EQ(c.model_type, "deepseek_v3");
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.q_lora_rank, 96);
  EXPECT_EQ(c.n_group, 4);
  EXPECT_EQ(c.topk_group, 2);
  EXPECT_EQ(c.scoring_func, "sigmoid");
  EXPECT_TRUE(c.has_score_bias());
  EXPECT_TRUE(c.fp8);
  EXPECT_EQ(c.weight_block_rows, 128);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{1});
}

TEST(Config, YarnAndNullQLoraRank) {
  json j = golden();
  j["q_lora_rank"] = nullptr;
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 40}, {"original_max_position_embeddings", 4096},
                       {"beta_fast", 32}, {"beta_slow", 1}, {"mscale", 1.0}, {"mscale_all_dim", 1.0}};
  const ModelConfig c = ModelConfig::from_json(j, "x");
  EXPECT_EQ(c.q_lora_rank, 0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->factor, 40.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_EQ(c.rope_scaling->mscale_all_dim, 1.0);
  // HF's newer spelling of the type key.
  j["rope_scaling"].erase("type");
  j["rope_scaling"]["rope_type"] = "yarn";
  EXPECT_TRUE(ModelConfig::from_json(j, "x").rope_scaling.has_value());
}

TEST(Config, V2StyleParsesWithV2Defaults) {
  json j = golden();
  j["model_type"] = "deepseek_v2";
  for (const char* k : {"scoring_func", "topk_method", "quantization_config", "n_group", "topk_group"}) j.erase(k);
  const ModelConfig c = ModelConfig::from_json(j, "x");
  EXPECT_EQ(c.scoring_func, "softmax");
  EXPECT_EQ(c.topk_method, "greedy");
  EXPECT_FALSE(c.has_score_bias());
  EXPECT_FALSE(c.group_limited());
  EXPECT_FALSE(c.fp8);
}

TEST(Config, ToJsonRoundTrips) {
  json j = golden();
  j["eos_token_id"] = {1, 2};
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 8}, {"original_max_position_embeddings", 512}};
  const ModelConfig c = ModelConfig::from_json(j, "x");
  const ModelConfig again = ModelConfig::from_json(c.to_json(), "y");
  EXPECT_EQ(again.to_json(), c.to_json());
  EXPECT_EQ(again.eos_token_ids, (std::vector<int64_t>{1, 2}));
}

TEST(ConfigBadInput, MissingRequiredField) {
  for (const char* field : {"hidden_size", "num_attention_heads", "kv_lora_rank", "vocab_size", "model_type",
                            "qk_rope_head_dim", "moe_intermediate_size"}) {
    json j = golden();
    j.erase(field);
    EXPECT_TRUE(says(parse_error(j), {"ckpt/config.json", "missing required field", std::string("'") + field + "'"}));
  }
  json j = golden();
  j["hidden_size"] = nullptr;
  EXPECT_TRUE(says(parse_error(j), {"ckpt/config.json", "'hidden_size'"}));
}

TEST(ConfigBadInput, WrongType) {
  json j = golden();
  j["hidden_size"] = "256";
  EXPECT_TRUE(says(parse_error(j), {"ckpt/config.json", "'hidden_size'", "integer", "\"256\""}));
  j = golden();
  j["num_hidden_layers"] = 2.5;
  EXPECT_TRUE(says(parse_error(j), {"'num_hidden_layers'", "integer"}));
  j = golden();
  j["rope_theta"] = "10000";
  EXPECT_TRUE(says(parse_error(j), {"'rope_theta'", "number"}));
  j = golden();
  j["norm_topk_prob"] = 1;
  EXPECT_TRUE(says(parse_error(j), {"'norm_topk_prob'", "true or false"}));
  j = golden();
  j["scoring_func"] = 3;
  EXPECT_TRUE(says(parse_error(j), {"'scoring_func'", "string"}));
  j = golden();
  j["rope_scaling"] = "yarn";
  EXPECT_TRUE(says(parse_error(j), {"rope_scaling"}));
  j = golden();
  j["quantization_config"]["weight_block_size"] = {128};
  EXPECT_TRUE(says(parse_error(j), {"weight_block_size"}));
  j = golden();
  j["eos_token_id"] = {1, "2"};
  EXPECT_TRUE(says(parse_error(j), {"eos_token_id"}));
  EXPECT_TRUE(says(parse_error(json::array({1, 2})), {"ckpt/config.json", "not a JSON object"}));
}

TEST(ConfigBadInput, WholeFloatsAreAcceptedAsIntegers) {
  json j = golden();
  j["hidden_size"] = 256.0;
  EXPECT_EQ(ModelConfig::from_json(j, "x").hidden_size, 256);
}

// DISABLED until Reader::integer in src/io/config.cpp range-checks a float before converting it
// (found by fuzz_config): 1e300 -> int64_t is undefined behaviour (UBSan: float-cast-overflow).
TEST(ConfigBadInput, HugeFloatForAnInteger) {
  json j = golden();
  j["hidden_size"] = 1e300;
  EXPECT_TRUE(says(parse_error(j), {"'hidden_size'"}));
  j["hidden_size"] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(says(parse_error(j), {"'hidden_size'"}));
}

// DISABLED until from_json bounds the sizes (see the report): hidden_size 2^55 makes
// count_params overflow int64 (UB in `dsv3 inspect`), num_hidden_layers 1e12 makes inspect loop
// for hours and load_model die with std::length_error instead of naming the file.
TEST(ConfigBadInput, ImplausiblyLargeSizes) {
  for (const char* field : {"hidden_size", "num_hidden_layers", "num_attention_heads", "n_routed_experts",
                            "moe_intermediate_size", "intermediate_size", "kv_lora_rank", "v_head_dim"}) {
    json j = golden();
    j[field] = int64_t(1) << 55;
    if (std::string(field) == "n_routed_experts") j["n_group"] = 1;
    EXPECT_TRUE(says(parse_error(j), {"ckpt/config.json", field, "implausibly large"})) << field;
  }
}

TEST(ConfigBadInput, NonsenseValues) {
  struct Case {
    const char* field;
    json value;
    std::vector<std::string> says;
  };
  const Case cases[] = {
      {"num_attention_heads", 0, {"num_attention_heads must be positive"}},
      {"num_attention_heads", -4, {"num_attention_heads must be positive"}},
      {"hidden_size", 0, {"hidden_size must be positive"}},
      {"num_hidden_layers", 0, {"num_hidden_layers"}},
      {"vocab_size", 0, {"vocab_size"}},
      {"vocab_size", int64_t(1) << 40, {"vocab_size"}},
      {"topk_group", 5, {"topk_group (5) exceeds n_group (4)"}},
      {"num_experts_per_tok", 17, {"num_experts_per_tok (17) exceeds n_routed_experts (16)"}},
      {"num_experts_per_tok", 0, {"num_experts_per_tok"}},
      {"n_group", 3, {"not divisible by n_group"}},
      {"n_group", 0, {"n_group"}},
      {"qk_rope_head_dim", 15, {"qk_rope_head_dim must be even"}},
      {"qk_rope_head_dim", 0, {"qk_rope_head_dim"}},
      {"kv_lora_rank", 0, {"kv_lora_rank"}},
      {"q_lora_rank", -1, {"q_lora_rank"}},
      {"v_head_dim", 0, {"v_head_dim"}},
      {"moe_layer_freq", 0, {"moe_layer_freq"}},
      {"first_k_dense_replace", -1, {"first_k_dense_replace"}},
      {"rms_norm_eps", 0, {"rms_norm_eps"}},
      {"rope_theta", -1, {"rope_theta"}},
      {"routed_scaling_factor", 0, {"routed_scaling_factor"}},
      {"max_position_embeddings", 0, {"max_position_embeddings"}},
      {"model_type", "llama", {"model_type 'llama' is not supported"}},
      {"scoring_func", "relu", {"scoring_func 'relu'"}},
      {"topk_method", "random", {"topk_method 'random'"}},
  };
  for (const auto& k : cases) {
    json j = golden();
    j[k.field] = k.value;
    const std::string msg = parse_error(j);
    EXPECT_TRUE(says(msg, {"ckpt/config.json"})) << k.field << " = " << k.value;
    for (const auto& s : k.says) EXPECT_TRUE(says(msg, {s})) << k.field << " = " << k.value;
  }
}

TEST(ConfigBadInput, GroupsThatCannotSupplyTheExperts) {
  json j = golden();  // 16 experts in 4 groups of 4; keep 1 group -> only 4 candidates
  j["topk_group"] = 1;
  j["num_experts_per_tok"] = 6;
  EXPECT_TRUE(says(parse_error(j), {"ckpt/config.json", "cannot supply"}));
}

TEST(ConfigBadInput, UnsupportedRopeScaling) {
  json j = golden();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4}};
  EXPECT_TRUE(says(parse_error(j), {"ckpt/config.json", "rope_scaling type 'linear' is not supported"}));
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 0.5}, {"original_max_position_embeddings", 4096}};
  EXPECT_TRUE(says(parse_error(j), {"rope_scaling.factor"}));
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4}};
  EXPECT_TRUE(says(parse_error(j), {"'original_max_position_embeddings'"}));
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4}, {"original_max_position_embeddings", 0}};
  EXPECT_TRUE(says(parse_error(j), {"original_max_position_embeddings"}));
}

TEST(ConfigBadInput, UnsupportedQuantization) {
  json j = golden();
  j["quantization_config"]["quant_method"] = "gptq";
  EXPECT_TRUE(says(parse_error(j), {"quant_method 'gptq'"}));
  j = golden();
  j["quantization_config"]["fmt"] = "e5m2";
  EXPECT_TRUE(says(parse_error(j), {"fmt 'e5m2'"}));
  j = golden();
  j["quantization_config"]["weight_block_size"] = {0, 128};
  EXPECT_TRUE(says(parse_error(j), {"weight_block_size"}));
}

TEST(ConfigBadInput, FileErrorsNameTheFile) {
  TempDir dir;
  const std::string path = dir.file("config.json");
  EXPECT_TRUE(says(error_of([&] { ModelConfig::from_file(path); }), {path, "cannot open"}));
  write_bytes(path, "{\"model_type\": \"deepseek_v3\", ");
  EXPECT_TRUE(says(error_of([&] { ModelConfig::from_file(path); }), {path, "malformed JSON"}));
  json j = golden();
  j.erase("hidden_size");
  write_bytes(path, j.dump());
  EXPECT_TRUE(says(error_of([&] { ModelConfig::from_file(path); }), {path, "'hidden_size'"}));
}

}  // namespace
}  // namespace dsv3
