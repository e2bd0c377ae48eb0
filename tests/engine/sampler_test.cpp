// Sampling on hand-made distributions: which tokens each filter keeps, reproducibility by seed,
// and that draws follow the filtered distribution.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "engine/generate.h"
#include "engine/sampler.h"

namespace dsv3 {
namespace {

// Logits whose softmax at temperature 1 is exactly `probs`.
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(float(std::log(p)));
  return l;
}

std::vector<int> kept(const std::vector<float>& p) {
  std::vector<int> k;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) k.push_back(int(i));
  return k;
}

const std::vector<double> kProbs = {0.05, 0.4, 0.1, 0.3, 0.15};  // sorted: 1, 3, 4, 2, 0

TEST(Sampler, GreedyIsArgmax) {
  Sampler s(SamplingParams{});
  EXPECT_EQ(s.sample(logits_of(kProbs)), 1);
  EXPECT_EQ(kept(s.probabilities(logits_of(kProbs))), (std::vector<int>{1}));
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  SamplingParams p;
  p.temperature = 1;
  p.top_p = 0.7f;  // 0.4 + 0.3 = 0.7 reaches it exactly
  EXPECT_EQ(kept(Sampler(p).probabilities(logits_of(kProbs))), (std::vector<int>{1, 3}));
  p.top_p = 0.71f;  // needs the third token
  EXPECT_EQ(kept(Sampler(p).probabilities(logits_of(kProbs))), (std::vector<int>{1, 3, 4}));
  p.top_p = 0.3f;  // the top token alone covers it
  EXPECT_EQ(kept(Sampler(p).probabilities(logits_of(kProbs))), (std::vector<int>{1}));
}

TEST(Sampler, TopKAndRenormalisation) {
  SamplingParams p;
  p.temperature = 1;
  p.top_k = 2;
  const auto probs = Sampler(p).probabilities(logits_of(kProbs));
  EXPECT_EQ(kept(probs), (std::vector<int>{1, 3}));
  EXPECT_NEAR(probs[1], 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(probs[3], 0.3 / 0.7, 1e-6);
}

TEST(Sampler, MinPIsRelativeToTheTopProbability) {
  SamplingParams p;
  p.temperature = 1;
  p.min_p = 0.3f;  // keeps p >= 0.12: tokens 1 (0.4), 3 (0.3), 4 (0.15)
  EXPECT_EQ(kept(Sampler(p).probabilities(logits_of(kProbs))), (std::vector<int>{1, 3, 4}));
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  SamplingParams p;
  p.temperature = 0.5f;  // p^2 renormalised
  const auto probs = Sampler(p).probabilities(logits_of(kProbs));
  double z = 0;
  for (double v : kProbs) z += v * v;
  for (size_t i = 0; i < kProbs.size(); ++i) EXPECT_NEAR(probs[i], kProbs[i] * kProbs[i] / z, 1e-6);
}

TEST(Sampler, SameSeedSameDrawsDifferentSeedDifferentDraws) {
  SamplingParams p;
  p.temperature = 1;
  p.seed = 42;
  Sampler a(p), b(p);
  p.seed = 43;
  Sampler c(p);
  std::vector<int> da, db, dc;
  const auto l = logits_of(kProbs);
  for (int i = 0; i < 200; ++i) {
    da.push_back(a.sample(l));
    db.push_back(b.sample(l));
    dc.push_back(c.sample(l));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Sampler, DrawFrequenciesFollowTheFilteredDistribution) {
  SamplingParams p;
  p.temperature = 1;
  p.top_p = 0.85f;  // keeps 1, 3, 4 with mass 0.85
  p.seed = 7;
  Sampler s(p);
  const auto l = logits_of(kProbs);
  std::vector<int> count(5, 0);
  const int n = 100000;
  for (int i = 0; i < n; ++i) count[size_t(s.sample(l))]++;
  EXPECT_EQ(count[0], 0);
  EXPECT_EQ(count[2], 0);
  // Binomial standard deviation at n = 1e5 is <= 0.0016; 5 sigma bounds.
  EXPECT_NEAR(count[1] / double(n), 0.4 / 0.85, 0.008);
  EXPECT_NEAR(count[3] / double(n), 0.3 / 0.85, 0.008);
  EXPECT_NEAR(count[4] / double(n), 0.15 / 0.85, 0.008);
}

TEST(Sampler, RejectsNonsenseParameters) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.top_p = 0;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.min_p = 2;
  EXPECT_THROW(Sampler{p}, Error);
}

}  // namespace
}  // namespace dsv3

namespace dsv3 {
namespace {

// OpenAI's penalties on hand-made logits: each generated token's logit drops by
// presence (once) + frequency x count; logit_bias adds to one token; greedy sees all of it.
TEST(SamplerPenalties, PresenceFrequencyAndBiasShiftGreedy) {
  const std::vector<float> logits = {1.0f, 0.9f, 0.0f, 0.5f};
  SamplingParams p;
  p.frequency_penalty = 0.06f;
  Sampler freq(p);
  EXPECT_EQ(freq.sample(logits), 0);
  freq.accept(0);  // 1.0 - 0.06 = 0.94 still beats 0.9
  EXPECT_EQ(freq.sample(logits), 0);
  freq.accept(0);  // 1.0 - 0.12 = 0.88 < 0.9
  EXPECT_EQ(freq.sample(logits), 1);

  p = {};
  p.presence_penalty = 0.2f;
  Sampler pres(p);
  pres.accept(0);
  EXPECT_EQ(pres.sample(logits), 1);  // 0.8 < 0.9
  pres.accept(1);                     // 0.8 vs 0.7: back to 0, and repeats cost no more
  EXPECT_EQ(pres.sample(logits), 0);
  pres.accept(0);
  pres.accept(0);
  EXPECT_EQ(pres.sample(logits), 0);

  p = {};
  p.logit_bias = {{3, 0.6f}};
  Sampler bias(p);
  EXPECT_EQ(bias.sample(logits), 3);  // 0.5 + 0.6
  // The distribution of sampling sees the same adjusted logits.
  p.temperature = 1.0f;
  Sampler biased_t(p);
  const auto probs = biased_t.probabilities(logits);
  EXPECT_GT(probs[3], probs[0]);
}

// Logprobs come from the raw logits: log-softmax, top alternatives best first.
TEST(SamplerPenalties, TokenLogprobIsLogSoftmax) {
  const std::vector<float> logits = {2.0f, 0.0f, 1.0f};
  const double z = std::exp(2.0) + std::exp(0.0) + std::exp(1.0);
  const TokenLogprob t = token_logprob(logits, 1, 2);
  EXPECT_NEAR(t.logprob, 0.0 - std::log(z), 1e-6);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].first, 0);
  EXPECT_NEAR(t.top[0].second, 2.0 - std::log(z), 1e-6);
  EXPECT_EQ(t.top[1].first, 2);
  EXPECT_TRUE(token_logprob(logits, 0, 0).top.empty());
}

}  // namespace
}  // namespace dsv3

namespace dsv3 {
namespace {

// argmax: the first index of the maximum, for every length around the 16-way blocking and
// every position of the maximum; ties go to the lowest index; a NaN never wins.
TEST(Argmax, FirstMaximumAtEveryPositionAndLength) {
  for (int64_t n : {1, 2, 15, 16, 17, 31, 32, 33, 100}) {
    for (int64_t at = 0; at < n; ++at) {
      std::vector<float> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[size_t(i)] = -1.0f - float((i * 7) % 5);
      v[size_t(at)] = 3.0f;
      EXPECT_EQ(argmax(v.data(), n), at) << n << " " << at;
      if (at + 1 < n) {
        v[size_t(n - 1)] = 3.0f;  // a tie later on
        EXPECT_EQ(argmax(v.data(), n), at) << n << " " << at;
      }
    }
  }
  std::vector<float> nan = {1.0f, std::nanf(""), 2.0f, 0.5f};
  EXPECT_EQ(argmax(nan.data(), 4), 2);
}

}  // namespace
}  // namespace dsv3
