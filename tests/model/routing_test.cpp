// DeepSeekMoE expert selection (model.py Gate) on hand-made router logits.
#include <gtest/gtest.h>

#include <cmath>

#include "model/moe.h"

namespace dsv3 {
namespace {

ModelConfig router_config() {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_group = 4;  // groups {0,1} {2,3} {4,5} {6,7}
  c.topk_group = 2;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  return c;
}

float logit_of(float sigmoid_value) { return std::log(sigmoid_value / (1 - sigmoid_value)); }

TEST(Routing, BiasSelectsButWeightsComeFromUnbiasedScores) {
  ModelConfig c = router_config();
  c.n_group = 1;
  c.topk_group = 1;
  std::vector<float> logits(8), bias(8, 0.0f);
  const float s[8] = {0.9f, 0.8f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
  for (int i = 0; i < 8; ++i) logits[size_t(i)] = logit_of(s[i]);
  bias[2] = 1.0f;  // 0.1 + 1.0 = 1.1 beats everything
  Routing r = route(c, logits.data(), bias.data());
  ASSERT_EQ(r.experts, (std::vector<int32_t>{2, 0}));
  EXPECT_NEAR(r.weights[0], 0.1 / (0.1 + 0.9) * 2.5, 1e-6);
  EXPECT_NEAR(r.weights[1], 0.9 / (0.1 + 0.9) * 2.5, 1e-6);
}

TEST(Routing, GroupScoreIsSumOfTopTwoWithBias) {
  ModelConfig c = router_config();
  // Group 0 has the single best expert (0.95) but a weak second (0.05): sum 1.0.
  // Groups 1 and 2 have two good experts each (0.6 + 0.6 = 1.2, 0.55 + 0.55 = 1.1); group 3: 0.2 + 0.2.
  const float s[8] = {0.95f, 0.05f, 0.6f, 0.6f, 0.55f, 0.55f, 0.2f, 0.2f};
  std::vector<float> logits(8), bias(8, 0.0f);
  for (int i = 0; i < 8; ++i) logits[size_t(i)] = logit_of(s[i]);
  Routing r = route(c, logits.data(), bias.data());
  // Groups 1 and 2 are kept, so expert 0 is excluded despite the highest score.
  ASSERT_EQ(r.experts.size(), 2u);
  for (int32_t e : r.experts) EXPECT_TRUE(e >= 2 && e <= 5) << e;
  EXPECT_EQ(r.experts[0], 2);  // ties broken toward the lower index
  EXPECT_EQ(r.experts[1], 3);
}

TEST(Routing, WithoutBiasGroupScoreIsMax) {
  ModelConfig c = router_config();
  c.topk_method = "group_limited_greedy";
  c.scoring_func = "softmax";
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 1.0;
  // Same shape as above: max-per-group keeps group 0 (0.95) and group 1 (0.6).
  const float s[8] = {0.95f, 0.05f, 0.6f, 0.6f, 0.55f, 0.55f, 0.2f, 0.2f};
  std::vector<float> logits(8);
  for (int i = 0; i < 8; ++i) logits[size_t(i)] = std::log(s[i]);
  Routing r = route(c, logits.data(), nullptr);
  ASSERT_EQ(r.experts, (std::vector<int32_t>{0, 2}));
  double z = 0;
  for (float v : s) z += v;
  EXPECT_NEAR(r.weights[0], 0.95 / z, 1e-6);  // softmax probabilities, not renormalised
  EXPECT_NEAR(r.weights[1], 0.6 / z, 1e-6);
}

TEST(Routing, ExcludedGroupsAreMinusInfinityNotZero) {
  // Negative biased scores: filling excluded groups with 0.0 (HF's port) would let an expert
  // of an excluded group win; model.py's -inf keeps the choice inside the kept groups.
  ModelConfig c = router_config();
  const float s[8] = {0.5f, 0.5f, 0.4f, 0.4f, 0.3f, 0.3f, 0.2f, 0.2f};
  std::vector<float> logits(8), bias(8, -1.0f);
  for (int i = 0; i < 8; ++i) logits[size_t(i)] = logit_of(s[i]);
  Routing r = route(c, logits.data(), bias.data());
  ASSERT_EQ(r.experts.size(), 2u);
  for (int32_t e : r.experts) EXPECT_LT(e, 4) << "expert " << e << " is in an excluded group";
}

TEST(Routing, NoGroupLimitWhenTopkMethodIsGreedy) {
  ModelConfig c = router_config();
  c.topk_method = "greedy";
  c.scoring_func = "softmax";
  const float s[8] = {0.3f, 0.25f, 0.01f, 0.01f, 0.01f, 0.01f, 0.2f, 0.21f};
  std::vector<float> logits(8);
  for (int i = 0; i < 8; ++i) logits[size_t(i)] = std::log(s[i]);
  Routing r = route(c, logits.data(), nullptr);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 1}));
}

}  // namespace
}  // namespace dsv3
