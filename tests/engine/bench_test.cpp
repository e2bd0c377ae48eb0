// The FLOP and byte counts `dsv3 bench` holds its throughput against: prefill and decode FLOPs
// on DeepSeek-V3's own config, and the weight bytes a batched step reads (its routed experts
// counted once) on the tiny synthetic model.
#include <gtest/gtest.h>

#include <set>

#include "engine/bench.h"
#include "engine/sequence.h"
#include "io/config.h"
#include "tests/engine/tiny_model.h"

namespace dsv3 {
namespace {

TEST(PrefillFlops, DeepSeekV3PerTokenAndCausalAttention) {
  const ModelConfig c = ModelConfig::from_file(std::string(DSV3_TESTDATA_DIR) + "/configs/deepseek-v3-671b/config.json");
  // 37,552,297,472 active parameters (inspect), of which the embedding and lm_head are
  // 129,280 x 7,168 each: 2 x (37,552,297,472 - 2 x 926,679,040) FLOPs per token in the
  // layers, 2 x 926,679,040 for the head on the last token.
  const double layers = 2.0 * (37552297472.0 - 2 * 926679040.0), head = 2.0 * 926679040.0;
  // Attention: 61 layers x 128 heads x (192 + 128) x 2 FLOPs per causal (query, key) pair.
  const double pair = 2.0 * 61 * 128 * 320;
  EXPECT_DOUBLE_EQ(prefill_flops(c, 1), layers + head + pair);
  EXPECT_DOUBLE_EQ(prefill_flops(c, 512), 512 * layers + head + pair * 512 * 513 / 2);
}

TEST(DecodeFlops, OneTokenAttendingToItsPositions) {
  const ModelConfig c = ModelConfig::from_file(std::string(DSV3_TESTDATA_DIR) + "/configs/deepseek-v3-671b/config.json");
  const double layers = 2.0 * (37552297472.0 - 2 * 926679040.0), head = 2.0 * 926679040.0, pair = 2.0 * 61 * 128 * 320;
  EXPECT_DOUBLE_EQ(decode_flops(c, 1), layers + head + pair);
  EXPECT_DOUBLE_EQ(decode_flops(c, 4096.5), layers + head + pair * 4096.5);
  EXPECT_DOUBLE_EQ(decode_flops(c, 1), prefill_flops(c, 1));  // a one-token prompt is one decode step
}

// One decode token reads the fixed part, k experts per MoE layer and one embedding row; a
// step's bytes grow with the distinct experts its rows ran, not with its rows.
TEST(StepWeightBytes, DecodeAndBatchedStepFromTheExpertsRun) {
  const LoadedModel& m = tiny_model();
  const ModelConfig& c = m.config;
  const StepWeightBytes wb = step_weight_bytes(c, m.model->weights());
  ASSERT_EQ(int64_t(wb.expert.size()), c.num_hidden_layers);
  double experts = 0;
  int64_t moe_layers = 0;
  for (size_t l = 0; l < wb.expert.size(); ++l) {
    EXPECT_EQ(wb.expert[l] > 0, m.model->weights().layers[l].is_moe) << l;
    experts += wb.expert[l];
    moe_layers += wb.expert[l] > 0;
  }
  ASSERT_GT(moe_layers, 0);
  EXPECT_GT(wb.fixed, 0);
  EXPECT_GT(wb.embed_row, 0);
  const int64_t k = c.num_experts_per_tok;
  EXPECT_DOUBLE_EQ(wb.decode(k), wb.fixed + wb.embed_row + double(k) * experts);
  std::vector<int64_t> same(wb.expert.size()), all(wb.expert.size());
  for (size_t l = 0; l < wb.expert.size(); ++l)
    same[l] = wb.expert[l] > 0 ? k : 0, all[l] = wb.expert[l] > 0 ? c.n_routed_experts : 0;
  // Four rows that chose the same experts read one row's experts and four embedding rows.
  EXPECT_DOUBLE_EQ(wb.step(4, same), wb.decode(k) + 3 * wb.embed_row);
  EXPECT_DOUBLE_EQ(wb.step(4, all), wb.fixed + 4 * wb.embed_row + double(c.n_routed_experts) * experts);
  EXPECT_THROW(wb.step(1, std::vector<int64_t>(wb.expert.size() + 1)), std::exception);

  // A traced batched step: each MoE layer's count is the set of experts its rows chose.
  ThreadPool pool(2);
  std::vector<Sequence> seqs;
  std::vector<Sequence*> ptrs;
  for (int b = 0; b < 3; ++b) seqs.emplace_back(*m.model, 16);
  for (int b = 0; b < 3; ++b) seqs[size_t(b)].feed(std::vector<int32_t>{0, 40 + b}, pool), ptrs.push_back(&seqs[size_t(b)]);
  ForwardTrace trace;
  trace.record_layer_outputs = false;
  feed_batch(ptrs, std::vector<int32_t>{7, 300, 900}, pool, &trace);
  EXPECT_TRUE(trace.layer_outputs.empty() || trace.layer_outputs[0].empty());
  const std::vector<int64_t> d = distinct_experts(trace);
  ASSERT_EQ(d.size(), wb.expert.size());
  for (size_t l = 0; l < d.size(); ++l) {
    std::set<int32_t> chosen;
    for (const Routing& r : trace.routing[l]) chosen.insert(r.experts.begin(), r.experts.end());
    EXPECT_EQ(d[l], int64_t(chosen.size())) << l;
    if (wb.expert[l] > 0) {
      EXPECT_EQ(trace.routing[l].size(), 3u) << l;
      EXPECT_GE(d[l], k) << l;
      EXPECT_LE(d[l], std::min<int64_t>(3 * k, c.n_routed_experts)) << l;
    } else {
      EXPECT_EQ(d[l], 0) << l;
    }
  }
}

}  // namespace
}  // namespace dsv3
