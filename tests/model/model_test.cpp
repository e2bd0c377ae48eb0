// Whole-model properties on synthetic checkpoints: incremental decoding equals a full
// recompute, results do not depend on the thread count, bad token ids are rejected.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/thread_pool.h"
#include "model/synth.h"
#include "model/transformer.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

class SynthModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv3_model_test_" + GetParam() + "_" + std::to_string(::getpid()));
    SynthOptions o;
    o.out_dir = dir_.string();
    o.fp8 = GetParam() != "bf16";
    o.progress = false;
    o.force = true;
    ModelConfig c = synth_preset("tiny");
    if (GetParam() == "noqlora") c.q_lora_rank = 0;
    if (GetParam() == "v2") {
      c.model_type = "deepseek_v2";
      c.scoring_func = "softmax";
      c.topk_method = "group_limited_greedy";
      c.norm_topk_prob = false;
      c.rope_scaling.reset();
      c.max_position_embeddings = 4096;
    }
    write_synthetic_checkpoint(c, o);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_P(SynthModel, IncrementalDecodeEqualsFullRecompute) {
  LoadedModel m = load_model(dir_.string());
  ThreadPool pool(2);
  const std::vector<int32_t> ids = {0, 5, 99, 7, 1000, 3, 42, 17, 256, 511};
  const int64_t n = int64_t(ids.size()), vocab = m.config.vocab_size;
  KVCache full_cache = m.model->make_cache(n, DType::F32);
  std::vector<float> full(static_cast<size_t>(n * vocab));
  m.model->forward(ids, 0, full_cache, full.data(), true, pool);

  // Prefill 4 tokens, then one at a time.
  KVCache cache = m.model->make_cache(n, DType::F32);
  std::vector<float> step(static_cast<size_t>(4 * vocab));
  m.model->forward(std::span(ids).first(4), 0, cache, step.data(), true, pool);
  double worst = 0;
  for (int64_t i = 0; i < 4 * vocab; ++i) worst = std::max(worst, double(std::fabs(step[size_t(i)] - full[size_t(i)])));
  for (int64_t p = 4; p < n; ++p) {
    m.model->forward(std::span(ids).subspan(size_t(p), 1), p, cache, step.data(), false, pool);
    for (int64_t i = 0; i < vocab; ++i)
      worst = std::max(worst, double(std::fabs(step[size_t(i)] - full[size_t(p * vocab + i)])));
  }
  EXPECT_LT(worst, 1e-4);  // same math, different batching of the linears: float32 rounding only
}

TEST_P(SynthModel, ThreadCountDoesNotChangeResults) {
  LoadedModel m = load_model(dir_.string());
  const std::vector<int32_t> ids = {0, 11, 22, 33, 44, 55};
  const int64_t vocab = m.config.vocab_size;
  std::vector<float> a(ids.size() * size_t(vocab)), b(a.size());
  ThreadPool one(1), three(3);
  KVCache ca = m.model->make_cache(6, DType::F32), cb = m.model->make_cache(6, DType::F32);
  m.model->forward(ids, 0, ca, a.data(), true, one);
  m.model->forward(ids, 0, cb, b.data(), true, three);
  EXPECT_EQ(a, b);  // every output element is reduced by one thread in a fixed order
}

TEST_P(SynthModel, LongContextAbsorbChunksAgreeWithExpandedForm) {
  // 700 positions: the absorb form splits attention into 256-position chunks merged by a safe
  // softmax (flash-decoding); the expanded form attends over the whole window in one pass (per
  // block of queries, the keys up to the block's last position).
  LoadedModel m = load_model(dir_.string());
  const int64_t n = 700, vocab = m.config.vocab_size;
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7919 + 13) % vocab);
  std::vector<float> a(static_cast<size_t>(vocab)), b(a.size()), c(a.size());
  ThreadPool one(1), three(3);
  KVCache ca = m.model->make_cache(n, DType::F32), cb = m.model->make_cache(n, DType::F32),
          cc = m.model->make_cache(n, DType::F32);
  m.model->set_mla_form(MLAForm::Absorb);
  m.model->forward(ids, 0, ca, a.data(), false, one);
  m.model->forward(ids, 0, cc, c.data(), false, three);
  m.model->set_mla_form(MLAForm::Expanded);
  m.model->forward(ids, 0, cb, b.data(), false, three);
  double worst = 0;
  for (int64_t i = 0; i < vocab; ++i) worst = std::max(worst, double(std::fabs(a[size_t(i)] - b[size_t(i)])));
  EXPECT_LT(worst, 1e-4);  // same math, float32 rounding in a different order
  EXPECT_EQ(a, c);         // chunking depends on the window, not on the thread count
}

TEST_P(SynthModel, ExpandedFormCausalBlocksAgreeAtEveryPositionAndChunk) {
  // The expanded form runs queries in blocks of 128, each against the keys up to its last
  // position only. Every position's logits, with the prompt fed whole or as two chunks (the
  // second starting at position 300, so its blocks' windows start mid-sequence), against the
  // absorb form fed whole.
  LoadedModel m = load_model(dir_.string());
  const int64_t n = 700, split = 300, vocab = m.config.vocab_size;
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 104729 + 7) % vocab);
  std::vector<float> absorb(size_t(n * vocab)), whole(absorb.size()), chunked(absorb.size());
  ThreadPool pool(2);
  KVCache ca = m.model->make_cache(n, DType::F32), cw = m.model->make_cache(n, DType::F32),
          cc = m.model->make_cache(n, DType::F32);
  m.model->set_mla_form(MLAForm::Absorb);
  m.model->forward(ids, 0, ca, absorb.data(), true, pool);
  m.model->set_mla_form(MLAForm::Expanded);
  m.model->forward(ids, 0, cw, whole.data(), true, pool);
  const std::span<const int32_t> all(ids);
  m.model->forward(all.first(size_t(split)), 0, cc, chunked.data(), true, pool);
  m.model->forward(all.subspan(size_t(split)), split, cc, chunked.data() + split * vocab, true, pool);
  double worst = 0;
  for (size_t i = 0; i < absorb.size(); ++i) {
    worst = std::max(worst, double(std::fabs(absorb[i] - whole[i])));
    worst = std::max(worst, double(std::fabs(absorb[i] - chunked[i])));
  }
  EXPECT_LT(worst, 1e-4);  // same math, float32 rounding in a different order
}

TEST_P(SynthModel, RejectsBadIdsAndFullContext) {
  LoadedModel m = load_model(dir_.string());
  ThreadPool pool(1);
  KVCache cache = m.model->make_cache(2, DType::F32);
  std::vector<float> logits(static_cast<size_t>(m.config.vocab_size));
  const std::vector<int32_t> bad = {0, int32_t(m.config.vocab_size)};
  EXPECT_THROW(m.model->forward(bad, 0, cache, logits.data(), false, pool), Error);
  const std::vector<int32_t> three = {0, 1, 2};
  EXPECT_THROW(m.model->forward(three, 0, cache, logits.data(), false, pool), Error);
}

INSTANTIATE_TEST_SUITE_P(Variants, SynthModel, ::testing::Values("fp8", "bf16", "noqlora", "v2"));

std::string file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// synth generates its bytes in bounded chunks (any config, even V3's 1.85 GB embedding): the
// chunk size must not change a byte of the checkpoint.
TEST(Synth, ChunkSizeDoesNotChangeTheBytes) {
  const fs::path a = fs::temp_directory_path() / "synth_chunk_big", b = fs::temp_directory_path() / "synth_chunk_8";
  for (const auto& [dir, chunk] : {std::pair{a, SynthOptions().chunk_bytes}, std::pair{b, uint64_t(8)}}) {
    SynthOptions o;
    o.out_dir = dir.string();
    o.progress = false;
    o.seed = 5;
    o.chunk_bytes = chunk;
    write_synthetic_checkpoint(synth_preset("tiny"), o);
  }
  int files = 0;
  for (const auto& e : fs::directory_iterator(a)) {
    EXPECT_TRUE(file_bytes(e.path()) == file_bytes(b / e.path().filename())) << e.path().filename();
    ++files;
  }
  EXPECT_GE(files, 3);
  fs::remove_all(a);
  fs::remove_all(b);
}

// `synth --config V3 --layers 2`: DeepSeek-V3's first layers are dense (first_k_dense_replace 3),
// so a cut keeps at most layers - 1 of them and the last is a MoE layer.
TEST(Synth, CutLayersKeepsAMoeLayer) {
  const ModelConfig v3 =
      ModelConfig::from_file((fs::path(DSV3_TESTDATA_DIR) / "configs" / "deepseek-v3-671b" / "config.json").string());
  ASSERT_EQ(v3.first_k_dense_replace, 3);
  const ModelConfig two = cut_layers(v3, 2);
  EXPECT_EQ(two.num_hidden_layers, 2);
  EXPECT_FALSE(two.is_moe_layer(0));
  EXPECT_TRUE(two.is_moe_layer(1));
  EXPECT_EQ(two.n_routed_experts, 256);
  EXPECT_EQ(cut_layers(v3, 5).first_k_dense_replace, 3);
  EXPECT_EQ(cut_layers(v3, 1).num_hidden_layers, 1);
  EXPECT_THROW(cut_layers(v3, 0), Error);
}

}  // namespace
}  // namespace dsv3
