// The FLOP and byte counts `dsv3 bench` holds its throughput against: prefill and decode FLOPs
// on DeepSeek-V3's own config, and the weight bytes a batched step reads (its routed experts
// counted once) on the tiny synthetic model.
#include <gtest/gtest.h>

#include <cstring>
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
  // The fixed bytes split into lm_head (with the final norm) and each layer's own; a layer's
  // share of a decoded token adds its k experts.
  ASSERT_EQ(wb.layer.size(), wb.expert.size());
  double parts = wb.head, decode_parts = wb.head + wb.embed_row;
  for (size_t l = 0; l < wb.layer.size(); ++l) {
    EXPECT_GT(wb.layer[l], 0) << l;
    EXPECT_GT(wb.attention[l], 0) << l;  // attn_norm and MLA
    EXPECT_LT(wb.attention[l], wb.layer[l]) << l;
    parts += wb.layer[l];
    EXPECT_DOUBLE_EQ(wb.layer_decode(l, k), wb.layer[l] + double(k) * wb.expert[l]) << l;
    decode_parts += wb.layer_decode(l, k);
  }
  EXPECT_GT(wb.head, double(c.vocab_size) * double(c.hidden_size));  // lm_head: at least a byte per weight
  EXPECT_NEAR(parts, wb.fixed, 1e-9 * wb.fixed);
  EXPECT_NEAR(decode_parts, wb.decode(k), 1e-9 * wb.decode(k));
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

// StepTimes, which bench's per-layer report reads, times each part of every forward step (a
// prefill, a decode step, an MTP step) at its boundaries and never touches the data: the
// logits are the same bits with and without it.
TEST(StepTimes, EveryPartTimedAndLogitsBitwiseEqual) {
  const LoadedModel& m = tiny_model();
  const ModelConfig& c = m.config;
  ASSERT_GT(m.model->mtp_depth(), 0);
  ThreadPool pool(2);
  const std::vector<int32_t> prompt = {0, 5, 7, 11, 3};
  auto run = [&](StepTimes* t) {
    m.model->set_step_times(t);
    Sequence s(*m.model, 16);
    s.feed(prompt, pool);
    std::vector<float> out = s.logits();
    const int32_t next[1] = {9};
    s.feed(next, pool);
    out.insert(out.end(), s.logits().begin(), s.logits().end());
    // The MTP module over the prompt: row i reads h[i] and the token after it.
    const std::vector<int32_t> after(prompt.begin() + 1, prompt.end());
    std::vector<float> h, mtp(static_cast<size_t>(c.vocab_size));
    for (size_t i = 0; i < after.size(); ++i) h.insert(h.end(), s.hidden_row(int64_t(i)), s.hidden_row(int64_t(i)) + c.hidden_size);
    m.model->mtp_forward(0, after, h.data(), 0, s.cache(), mtp.data(), false, pool);
    out.insert(out.end(), mtp.begin(), mtp.end());
    m.model->set_step_times(nullptr);
    return out;
  };
  const std::vector<float> plain = run(nullptr);
  StepTimes t;
  const std::vector<float> timed = run(&t);
  ASSERT_EQ(plain.size(), timed.size());
  EXPECT_EQ(std::memcmp(plain.data(), timed.data(), plain.size() * sizeof(float)), 0);
  EXPECT_EQ(t.steps, 2);
  EXPECT_EQ(t.rows, int64_t(prompt.size()) + 1);
  EXPECT_EQ(t.mtp_steps, 1);
  EXPECT_EQ(t.mtp_rows, int64_t(prompt.size()) - 1);
  ASSERT_EQ(int64_t(t.layer.size()), c.num_hidden_layers);
  double parts = t.embed + t.head;
  ASSERT_EQ(t.attention.size(), t.layer.size());
  for (size_t l = 0; l < t.layer.size(); ++l) {
    EXPECT_GT(t.layer[l], 0) << l;
    EXPECT_GT(t.attention[l], 0) << l;
    EXPECT_LT(t.attention[l], t.layer[l]) << l;  // the attention half lies inside its layer
    parts += t.layer[l];
  }
  EXPECT_GT(t.embed, 0);
  EXPECT_GT(t.head, 0);
  EXPECT_GT(t.mtp, 0);
  // The parts lie inside their steps, one after another.
  EXPECT_LE(parts, t.step);
  // Another step adds to what is there.
  const StepTimes before = t;
  m.model->set_step_times(&t);
  Sequence s(*m.model, 16);
  s.feed(prompt, pool);
  m.model->set_step_times(nullptr);
  EXPECT_EQ(t.steps, before.steps + 1);
  EXPECT_GT(t.step, before.step);
  for (size_t l = 0; l < t.layer.size(); ++l) EXPECT_GT(t.layer[l], before.layer[l]) << l;
}

}  // namespace
}  // namespace dsv3
