// The perplexity math on hand-made logits (log-softmax, NLL, KL, agreement), the window plan,
// and score_windows against a plain forward pass on the golden tiny-v3 checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/perplexity.h"
#include "model/transformer.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

TEST(PerplexityMath, UniformLogitsGivePerplexityEqualToVocab) {
  for (int64_t vocab : {2, 7, 1024, 129280}) {
    const std::vector<float> logits(size_t(vocab), 3.25f);  // any constant: softmax is uniform
    PerplexityStats st;
    for (int32_t t : {0, 1, int32_t(vocab - 1)}) st.add(token_nll(logits, t));
    EXPECT_NEAR(st.mean_nll(), std::log(double(vocab)), 1e-12);
    EXPECT_NEAR(st.ppl(), double(vocab), 1e-9 * double(vocab));
  }
}

TEST(PerplexityMath, NllIsStableForLargeLogits) {
  // Naive exp overflows float and double here; the max-shifted sum does not.
  const std::vector<float> logits{1000.0f, 999.0f, -1e30f};
  // p = (1, e^-1, 0) / (1 + e^-1): nll(0) = log(1 + e^-1), nll(1) = 1 + log(1 + e^-1).
  const double z = std::log1p(std::exp(-1.0));
  EXPECT_NEAR(token_nll(logits, 0), z, 1e-12);
  EXPECT_NEAR(token_nll(logits, 1), 1.0 + z, 1e-12);
  EXPECT_NEAR(log_sum_exp(logits), 1000.0 + z, 1e-12);
  EXPECT_NEAR(token_nll(logits, 2), 1e30, 1e24);  // a near-impossible target costs what it should
}

TEST(PerplexityMath, KlOfIdenticalIsZero) {
  std::vector<float> a(1000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(float(i)) * 7.0f;
  EXPECT_EQ(kl_divergence(a, a), 0.0);
  // Shifting all logits leaves the distribution unchanged.
  std::vector<float> b = a;
  for (float& x : b) x += 12.5f;
  EXPECT_NEAR(kl_divergence(a, b), 0.0, 1e-12);
}

TEST(PerplexityMath, KlOfTwoKnownDistributions) {
  // P = (1/2, 1/4, 1/4), Q = (1/4, 1/4, 1/2) as log-probabilities:
  // KL(P || Q) = 1/2 log 2 + 0 + 1/4 log(1/2) = 1/4 log 2; KL(Q || P) = 1/4 log(1/2) + 1/2 log 2 = 1/4 log 2.
  const std::vector<float> p{std::log(0.5f), std::log(0.25f), std::log(0.25f)};
  const std::vector<float> q{std::log(0.25f), std::log(0.25f), std::log(0.5f)};
  EXPECT_NEAR(kl_divergence(p, q), 0.25 * std::log(2.0), 1e-7);
  // An asymmetric pair: P = (0.9, 0.1), Q = (0.5, 0.5).
  const std::vector<float> p2{std::log(0.9f), std::log(0.1f)}, q2{0.0f, 0.0f};
  EXPECT_NEAR(kl_divergence(p2, q2), 0.9 * std::log(1.8) + 0.1 * std::log(0.2), 1e-7);
  EXPECT_NEAR(kl_divergence(q2, p2), 0.5 * std::log(0.5 / 0.9) + 0.5 * std::log(0.5 / 0.1), 1e-7);
  // A token P never picks (logit -inf) adds nothing, wherever Q puts mass.
  const float ninf = -std::numeric_limits<float>::infinity();
  EXPECT_NEAR(kl_divergence(std::vector<float>{0.0f, ninf}, std::vector<float>{0.0f, 0.0f}), std::log(2.0), 1e-7);
}

TEST(PerplexityMath, AgreementStats) {
  AgreementStats a;
  const std::vector<float> x{1, 3, 2}, y{1, 2, 3}, z{0, 5, 1};
  a.add(x, x);
  a.add(x, z);  // same argmax, different distribution
  a.add(x, y);  // different argmax
  EXPECT_EQ(a.positions, 3);
  EXPECT_EQ(a.top1_agree, 2);
  EXPECT_NEAR(a.top1_agreement(), 2.0 / 3.0, 1e-15);
  const double k2 = kl_divergence(x, z), k3 = kl_divergence(x, y);
  EXPECT_NEAR(a.kl_mean(), (k2 + k3) / 3.0, 1e-15);
  EXPECT_DOUBLE_EQ(a.kl_max, std::max(k2, k3));
  EXPECT_EQ(argmax(std::vector<float>{2, 5, 5, 1}), 1);  // first on ties
}

TEST(PerplexityMath, BitsPerByte) {
  PerplexityStats st;
  st.add(std::log(2.0) * 3);  // 3 bits
  st.add(std::log(2.0) * 5);  // 5 bits
  EXPECT_NEAR(st.bits_per_byte(4), 2.0, 1e-12);
  EXPECT_TRUE(std::isnan(st.bits_per_byte(0)));
}

// Every target 1..n-1 is scored exactly once, from a window that holds the token before it.
void expect_covers(const std::vector<ScoreWindow>& ws, int64_t n, int64_t ctx, int64_t stride) {
  std::vector<int> seen(size_t(n), 0);
  for (const ScoreWindow& w : ws) {
    EXPECT_LE(w.end - w.begin, ctx);
    EXPECT_GT(w.first_target, w.begin);
    for (int64_t t = w.first_target; t < w.end; ++t) ++seen[size_t(t)];
  }
  for (int64_t t = 1; t < n; ++t) {
    // Non-overlapping chunks skip the first token of each later chunk (it has no context there).
    const bool chunk_start = stride == ctx && t % ctx == 0;
    EXPECT_EQ(seen[size_t(t)], chunk_start ? 0 : 1) << "target " << t << " n " << n << " ctx " << ctx;
  }
}

TEST(PerplexityWindows, Plans) {
  // Non-overlapping chunks.
  auto w = plan_windows(10, 4, 4);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].begin, 0); EXPECT_EQ(w[0].end, 4); EXPECT_EQ(w[0].first_target, 1);
  EXPECT_EQ(w[1].begin, 4); EXPECT_EQ(w[1].end, 8); EXPECT_EQ(w[1].first_target, 5);
  EXPECT_EQ(w[2].begin, 8); EXPECT_EQ(w[2].end, 10); EXPECT_EQ(w[2].first_target, 9);
  // Sliding: window k starts at 2k, scores what the previous did not.
  w = plan_windows(10, 4, 2);
  ASSERT_EQ(w.size(), 4u);
  EXPECT_EQ(w[1].begin, 2); EXPECT_EQ(w[1].end, 6); EXPECT_EQ(w[1].first_target, 4);
  EXPECT_EQ(w[3].begin, 6); EXPECT_EQ(w[3].end, 10); EXPECT_EQ(w[3].first_target, 8);
  // Shorter than one window.
  w = plan_windows(3, 512, 512);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].scored(), 2);
  for (int64_t n : {2, 3, 9, 16, 17, 100})
    for (int64_t ctx : {2, 3, 8})
      for (int64_t stride = 1; stride <= ctx; ++stride) expect_covers(plan_windows(n, ctx, stride), n, ctx, stride);
  EXPECT_THROW(plan_windows(1, 8, 8), Error);
  EXPECT_THROW(plan_windows(10, 1, 1), Error);
  EXPECT_THROW(plan_windows(10, 8, 9), Error);
  EXPECT_THROW(plan_windows(10, 8, 0), Error);
}

const std::string kGolden = std::string(DSV3_TESTDATA_DIR) + "/golden/tiny-v3";

std::vector<int32_t> test_ids(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t((i * 7919 + 13) % vocab);
  ids[0] = 0;  // BOS
  return ids;
}

TEST(ScoreWindows, OneWindowEqualsAPlainForward) {
  LoadedModel m = load_model(kGolden, false);
  ThreadPool pool(2);
  const int64_t n = 40, vocab = m.config.vocab_size;
  const auto ids = test_ids(n, vocab);
  KVCache cache = m.model->make_cache(n, DType::F32);
  std::vector<float> all(size_t(n * vocab));
  m.model->forward(ids, 0, cache, all.data(), true, pool);
  double want = 0;
  for (int64_t t = 1; t < n; ++t) want += token_nll(std::span(&all[size_t((t - 1) * vocab)], size_t(vocab)), ids[size_t(t)]);

  const auto windows = plan_windows(n, n, n);
  WindowRunOptions opt;
  opt.cache_dtype = DType::F32;
  PerplexityStats st;
  int64_t next = 1;
  score_windows(*m.model, ids, windows, opt, pool, [&](int64_t target, std::span<const float> logits) {
    EXPECT_EQ(target, next++);
    st.add(token_nll(logits, ids[size_t(target)]));
  });
  EXPECT_EQ(st.tokens, n - 1);
  EXPECT_NEAR(st.nll_sum, want, 1e-9 * std::fabs(want));
}

TEST(ScoreWindows, MicroBatchesAndSlidingWindowsAgree) {
  LoadedModel m = load_model(kGolden, false);
  ThreadPool pool(2);
  const int64_t n = 50, vocab = m.config.vocab_size;
  const auto ids = test_ids(n, vocab);
  auto total = [&](int64_t ctx, int64_t stride, int64_t ubatch, int64_t* scored) {
    WindowRunOptions opt;
    opt.cache_dtype = DType::F32;
    opt.ubatch = ubatch;
    PerplexityStats st;
    int64_t windows_done = 0;
    const auto windows = plan_windows(n, ctx, stride);
    score_windows(
        *m.model, ids, windows, opt, pool,
        [&](int64_t target, std::span<const float> logits) { st.add(token_nll(logits, ids[size_t(target)])); },
        [&](const ScoreWindow&) { ++windows_done; });
    EXPECT_EQ(windows_done, int64_t(windows.size()));
    *scored = st.tokens;
    return st.nll_sum;
  };
  int64_t s1 = 0, s2 = 0, s3 = 0;
  const double whole = total(n, n, 0, &s1);
  // The same window fed 1 and 7 tokens at a time (decode path, chunked prefill): same numbers
  // up to float32 rounding of a different operation order.
  EXPECT_NEAR(total(n, n, 1, &s2), whole, 1e-4 * std::fabs(whole));
  EXPECT_NEAR(total(n, n, 7, &s3), whole, 1e-4 * std::fabs(whole));
  EXPECT_EQ(s1, n - 1);
  EXPECT_EQ(s2, n - 1);
  // Sliding windows of 16 by 4 score every target once, with less context: a different sum.
  int64_t s4 = 0;
  total(16, 4, 0, &s4);
  EXPECT_EQ(s4, n - 1);
  int64_t s5 = 0;
  total(16, 16, 0, &s5);
  EXPECT_EQ(s5, n - 1 - (n - 1) / 16);  // chunk starts 16, 32, 48 are context only
}

}  // namespace
}  // namespace dsv3
