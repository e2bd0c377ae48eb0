// A GGUF file is the same model as the checkpoint it was converted from: synthetic float
// checkpoints written as deepseek2 GGUF (every MLA layout: attn_kv_b only, attn_k_b + attn_v_b,
// all three; V3 with MTP and V2-Lite without q-LoRA) give the safetensors model's logits, and
// damaged model files fail with one line.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/thread_pool.h"
#include "hf_to_gguf.h"
#include "model/synth.h"
#include "model/transformer.h"
#include "tests/io/io_test_util.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using testing::KvBLayout;

std::vector<float> prompt_logits(const LoadedModel& m, MLAForm form) {
  const std::vector<int32_t> ids = {0, 5, 99, 7, 1000, 3, 42, 17, 256, 511, 12, 800};
  m.model->set_mla_form(form);
  ThreadPool pool(2);
  KVCache cache = m.model->make_cache(int64_t(ids.size()));
  std::vector<float> logits(ids.size() * size_t(m.config.vocab_size));
  m.model->forward(ids, 0, cache, logits.data(), true, pool);
  return logits;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

class GgufFromCheckpoint : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    SynthOptions o;
    o.out_dir = (dir_.path() / "hf").string();
    o.fp8 = false;  // BF16: GGUF float types hold it exactly
    o.progress = false;
    c_ = synth_preset("tiny");
    if (GetParam() == "v2lite") {  // DeepSeek-V2-Lite's choices: no q-LoRA, softmax, one group
      c_.model_type = "deepseek_v2";
      c_.q_lora_rank = 0;
      c_.scoring_func = "softmax";
      c_.topk_method = "greedy";
      c_.n_group = 1;
      c_.topk_group = 1;
      c_.norm_topk_prob = false;
      c_.routed_scaling_factor = 1.0;
      c_.num_nextn_predict_layers = 0;
      c_.rope_scaling.reset();
      c_.max_position_embeddings = 4096;
    }
    c_.fp8 = false;
    write_synthetic_checkpoint(c_, o);
  }
  std::string write_gguf(KvBLayout layout, const std::string& name) {
    const Checkpoint ck = Checkpoint::open((dir_.path() / "hf").string());
    const std::string path = (dir_.path() / name).string();
    testing::write_bytes(path, testing::hf_to_gguf(ck, ModelConfig::from_file((dir_.path() / "hf/config.json").string()),
                                                   layout));
    return path;
  }
  testing::TempDir dir_{"gguf-model"};
  ModelConfig c_;
};

TEST_P(GgufFromCheckpoint, EveryMlaLayoutGivesTheCheckpointsLogits) {
  const LoadedModel hf = load_model((dir_.path() / "hf").string());
  for (const auto& [layout, name] : {std::pair{KvBLayout::Fused, "fused.gguf"}, std::pair{KvBLayout::Split, "split.gguf"},
                                     std::pair{KvBLayout::Both, "both.gguf"}}) {
    SCOPED_TRACE(name);
    const LoadedModel g = load_model(write_gguf(layout, name));
    ModelConfig want = hf.config;
    want.rms_norm_eps = double(float(want.rms_norm_eps));  // GGUF stores it as f32
    EXPECT_EQ(g.config.to_json().dump(), want.to_json().dump());
    EXPECT_EQ(g.model->mtp_depth(), hf.model->mtp_depth());
    const auto& a = g.model->weights().layers[0].attn;
    EXPECT_EQ(a.has_wkv_b(), layout != KvBLayout::Split);
    EXPECT_EQ(a.has_split_kv_b(), layout != KvBLayout::Fused);
    EXPECT_EQ(a.wq.data != nullptr, GetParam() == "v2lite");  // attn_q without q-LoRA
    for (MLAForm form : {MLAForm::Absorb, MLAForm::Expanded}) {
      SCOPED_TRACE(form == MLAForm::Absorb ? "absorb" : "expanded");
      const auto want = prompt_logits(hf, form), got = prompt_logits(g, form);
      // The fused layout reads the same bytes through the same products: identical. The split
      // one sums W_uk's products in another order: float32 rounding only.
      if (layout == KvBLayout::Fused) EXPECT_EQ(max_abs_diff(want, got), 0.0);
      else EXPECT_LT(max_abs_diff(want, got), 1e-4);
    }
  }
}

TEST_P(GgufFromCheckpoint, ExpertsAreViewsIntoTheStackedTensor) {
  const std::string path = write_gguf(KvBLayout::Split, "m.gguf");
  const LoadedModel g = load_model(path);
  const GgufModel& file = *g.gguf;
  const int64_t l = c_.first_k_dense_replace;
  const auto& st = file.get("blk." + std::to_string(l) + ".ffn_up_exps.weight");
  const auto* base = file.files()[0]->data(*st.info);
  const auto& experts = g.model->weights().layers[size_t(l)].moe.experts;
  for (size_t e = 0; e < experts.size(); ++e)
    EXPECT_EQ(experts[e].w3.data, base + e * size_t(c_.moe_intermediate_size * c_.hidden_size) * 2) << e;
  EXPECT_EQ(experts[3].w3.rows, c_.moe_intermediate_size);
}

TEST_P(GgufFromCheckpoint, DamagedModelsFailWithOneLine) {
  const Checkpoint ck = Checkpoint::open((dir_.path() / "hf").string());
  // A tensor the model does not know.
  testing::GgufBuilder extra;
  const ModelConfig c = ModelConfig::from_file((dir_.path() / "hf/config.json").string());
  std::string bytes = testing::hf_to_gguf(ck, c, KvBLayout::Split);
  const std::string path = (dir_.path() / "bad.gguf").string();
  // The embedding's row count in the metadata no longer matches the tensor.
  ModelConfig wrong = c;
  wrong.vocab_size += 1;
  testing::GgufBuilder b;
  for (const auto& [k, v] : gguf::metadata_from_config(wrong)) testing::add_value(b, k, v);
  b.tensor("token_embd.weight", 30, {uint64_t(c.hidden_size), uint64_t(c.vocab_size)},
           std::string(size_t(c.hidden_size * c.vocab_size) * 2, '\0'));
  testing::write_bytes(path, b.bytes());
  EXPECT_TRUE(testing::says(testing::error_of([&] { load_model(path); }),
                            {path, "token_embd.weight", "[1024, 256]", "expected [1025, 256]"}));
  // Every tensor present but one more.
  testing::GgufBuilder c2;
  for (const auto& [k, v] : gguf::metadata_from_config(c)) testing::add_value(c2, k, v);
  c2.tensor("blk.0.attn_q_b.weight", 0, {1}, std::string(4, '\0'));
  testing::write_bytes(path, c2.bytes());
  EXPECT_TRUE(testing::says(testing::error_of([&] { load_model(path); }), {path, "missing tensor"}));
  // Truncated file: the header still claims the tensor data.
  testing::write_bytes(path, bytes.substr(0, bytes.size() - 100));
  EXPECT_TRUE(testing::says(testing::error_of([&] { load_model(path); }), {path, "cut short"}));
}

INSTANTIATE_TEST_SUITE_P(Gguf, GgufFromCheckpoint, ::testing::Values("v3", "v2lite"));

}  // namespace
}  // namespace dsv3
