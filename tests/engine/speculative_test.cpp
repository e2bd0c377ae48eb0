// Speculative decoding: the acceptance rule on hand-made distributions, and greedy speculative
// output identical to plain greedy output (the proof that speculation is exact) with the MTP
// drafter and with drafters that are right, wrong, or right only sometimes.
#include <gtest/gtest.h>

#include "tests/param_name.h"

#include <filesystem>

#include "engine/generate.h"
#include "engine/speculative.h"
#include "model/synth.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

// The gate closes when the running acceptance falls below the break-even (here after two drafted
// steps with nothing accepted), stays closed for kMinBackoff plain steps, probes, doubles its
// backoff after each failed probe up to kMaxBackoff, and opens on a good probe.
TEST(DraftGate, ClosesOnLowAcceptanceAndProbesWithBackoff) {
  DraftGate g;
  EXPECT_TRUE(g.draft());
  g.record(1, 1);
  EXPECT_TRUE(g.draft());
  g.record(1, 0);
  EXPECT_TRUE(g.open()) << "one miss after a hit keeps drafting";
  EXPECT_TRUE(g.draft());
  g.record(1, 0);
  ASSERT_FALSE(g.open()) << "acceptance " << g.acceptance();
  auto plain_steps_before_probe = [&g] {
    int n = 0;
    while (!g.draft()) ++n;
    return n;
  };
  EXPECT_EQ(plain_steps_before_probe(), DraftGate::kMinBackoff);
  g.record(2, 0);  // a failed probe
  EXPECT_FALSE(g.open());
  EXPECT_EQ(plain_steps_before_probe(), 2 * DraftGate::kMinBackoff);
  for (int i = 0; i < 10; ++i) {
    g.record(1, 0);
    plain_steps_before_probe();
  }
  g.record(1, 0);
  EXPECT_EQ(plain_steps_before_probe(), DraftGate::kMaxBackoff);
  g.record(2, 2);  // a good probe opens it
  EXPECT_TRUE(g.open());
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(g.draft());
  g.record(0, 0);  // nothing drafted: no change
  EXPECT_TRUE(g.open());
}

// Timed (greedy): the first step times a plain one; the first drafted step after opening is not
// timed (its MTP catch-up covers the plain steps' rows); drafted steps that emit fewer tokens
// per second than plain ones close the gate even at full acceptance: for good when a drafted
// step costs at least 1 + k plain ones (nothing could pay), else with a doubled backoff, and a
// probe then reopens on acceptance alone, however slow its catch-up.
TEST(DraftGate, TimedClosesWhenDraftingEmitsFewerTokensPerSecond) {
  auto plain_steps_before_probe = [](DraftGate& g) {
    int n = 0;
    while (!g.draft() && n < 100000) ++n;
    return n;
  };
  {
    DraftGate g(DraftGate::kDefaultMinAcceptance, /*timed=*/true);
    EXPECT_FALSE(g.draft()) << "the first step times a plain one";
    g.record_plain(1.0);  // 1 token/s
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(g.draft());
      ASSERT_TRUE(g.open());
      g.record(1, 1, 2.8);  // 2 tokens in 2.8 s (the first not timed)
    }
    ASSERT_FALSE(g.open()) << "all drafts accepted, but a step costs 2.8 plain ones, more than k + 1";
    EXPECT_EQ(plain_steps_before_probe(g), 100000) << "no probe: drafting cannot pay on this model";
  }
  DraftGate g(DraftGate::kDefaultMinAcceptance, /*timed=*/true);
  EXPECT_FALSE(g.draft());
  g.record_plain(1.0);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(g.draft());
    g.record(2, 1, 2.5);  // 2 tokens in 2.5 s, where 3 could pay
  }
  ASSERT_FALSE(g.open());
  EXPECT_EQ(plain_steps_before_probe(g), DraftGate::kMinBackoff);
  g.record(2, 2, 50.0);  // a probe with a long MTP catch-up: opens on acceptance
  ASSERT_TRUE(g.open());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(g.draft());
    g.record(2, 1, 2.5);
  }
  ASSERT_FALSE(g.open());
  EXPECT_EQ(plain_steps_before_probe(g), 2 * DraftGate::kMinBackoff);
}

TEST(DraftGate, TimedStaysOpenWhileDraftingPaysAndRetimesPlainSteps) {
  DraftGate g(DraftGate::kDefaultMinAcceptance, /*timed=*/true);
  EXPECT_FALSE(g.draft());
  g.record_plain(1.0);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < DraftGate::kControlEvery; ++i) {
      ASSERT_TRUE(g.draft()) << "round " << round << " step " << i;
      g.record(1, 1, 1.5);  // 1.33 tokens/s
    }
    EXPECT_FALSE(g.draft()) << "a control step after " << DraftGate::kControlEvery << " drafted ones";
    g.record_plain(1.0);
    EXPECT_TRUE(g.open());
  }
  // The count gate never reads time: no control steps, and slow drafted steps keep it open.
  DraftGate u;
  for (int i = 0; i < 3 * DraftGate::kControlEvery; ++i) {
    ASSERT_TRUE(u.draft());
    u.record(1, 1, 100.0);
  }
  EXPECT_TRUE(u.open());
}

TEST(SpeculativeAccept, OutputIsDistributedAsTheTarget) {
  // Draft from q, apply the rule: the accepted-or-replaced token must follow p exactly.
  const std::vector<float> p = {0.5f, 0.2f, 0.2f, 0.1f, 0.0f}, q = {0.1f, 0.5f, 0.1f, 0.1f, 0.2f};
  SamplingParams sp;
  sp.temperature = 1;
  sp.seed = 11;
  Sampler rng(sp);
  const int n = 200000;
  std::vector<int> count(p.size());
  int accepted = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t d = rng.draw(q);
    const AcceptResult r = speculative_accept(p, q, d, rng);
    accepted += r.accepted;
    count[size_t(r.token)]++;
  }
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(count[i] / double(n), p[i], 0.006) << "token " << i;
  // Acceptance probability is sum_x min(p, q) = 0.1 + 0.2 + 0.1 + 0.1 + 0 = 0.5.
  EXPECT_NEAR(accepted / double(n), 0.5, 0.006);
}

TEST(SpeculativeAccept, GreedyAcceptsOnlyTheArgmax) {
  const std::vector<float> p = {0, 1, 0}, q_right = {0, 1, 0}, q_wrong = {0, 0, 1};
  Sampler rng(SamplingParams{});
  EXPECT_TRUE(speculative_accept(p, q_right, 1, rng).accepted);
  const AcceptResult r = speculative_accept(p, q_wrong, 2, rng);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(r.token, 1);
}

class SpeculativeGreedy : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "golden-mtp-v3") {
      dir_ = fs::path(DSV3_TESTDATA_DIR) / "golden" / "mtp-v3";
      return;
    }
    if (GetParam() == "trained-dsv3-kjv") {  // the embedded default model: its MTP drafts are accepted often
      dir_ = fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv";
      return;
    }
    dir_ = fs::temp_directory_path() / ("dsv3_spec_" + GetParam() + "_" + std::to_string(::getpid()));
    SynthOptions o;
    o.out_dir = dir_.string();
    o.fp8 = GetParam() == "synth-fp8";
    o.progress = false;
    o.force = true;
    o.seed = 3;
    write_synthetic_checkpoint(synth_preset("tiny"), o);
    owned_ = true;
  }
  void TearDown() override {
    if (owned_) fs::remove_all(dir_);
  }

  std::vector<int32_t> run(const LoadedModel& m, int k, const Drafter& drafter, SpecStats* stats = nullptr) {
    ThreadPool pool(2);
    Sequence seq(*m.model, 64);
    GenerateOptions g;
    g.max_new_tokens = 24;
    g.stop_at_eos = false;
    g.speculative_k = k;
    g.drafter = drafter;
    g.timed_draft_gate = false;  // the step counts below are the count gate's
    const GenerateResult r = generate(seq, prompt_, nullptr, g, pool);
    if (stats) *stats = r.spec;
    return r.tokens;
  }

  fs::path dir_;
  bool owned_ = false;
  const std::vector<int32_t> prompt_ = {0, 17, 42, 99, 5, 300, 7};
};

TEST_P(SpeculativeGreedy, MtpDraftsGiveTheSameTokensAsPlainGreedy) {
  LoadedModel m = load_model(dir_.string());
  ASSERT_GT(m.model->mtp_depth(), 0);
  const auto plain = run(m, 0, {});
  for (int k : {1, 2, 3}) {
    SpecStats s;
    EXPECT_EQ(run(m, k, {}, &s), plain) << "mtp:" << k;
    if (GetParam() == "trained-dsv3-kjv") {
      EXPECT_GT(s.accepted, 0) << "a trained MTP head has its drafts accepted";
    }
  }
}

TEST_P(SpeculativeGreedy, OracleAndWrongDraftsGiveTheSameTokensAsPlainGreedy) {
  LoadedModel m = load_model(dir_.string());
  const int64_t vocab = m.config.vocab_size;
  const auto plain = run(m, 0, {});
  // A drafter that knows the true continuation, wrong at chosen draft indices (counted globally).
  auto make = [&](std::function<bool(int)> wrong_at) {
    auto calls = std::make_shared<int>(0);
    return Drafter([&, wrong_at, calls](Sequence& seq, int32_t x, int k, std::vector<float>& q) {
      // Position of x among the generated tokens: seq.pos() - prompt.
      const size_t at = size_t(seq.pos()) - prompt_.size();
      EXPECT_EQ(x, plain[at]);
      std::vector<int32_t> d;
      q.assign(size_t(k) * size_t(vocab), 0.0f);
      for (int j = 0; j < k; ++j) {
        const size_t idx = at + 1 + size_t(j);
        int32_t t = idx < plain.size() ? plain[idx] : 0;
        if (wrong_at((*calls)++)) t = (t + 1) % int32_t(vocab);
        d.push_back(t);
        q[size_t(j) * size_t(vocab) + size_t(t)] = 1.0f;
      }
      return d;
    });
  };
  for (int k : {1, 2, 4}) {
    SpecStats s;
    EXPECT_EQ(run(m, k, make([](int) { return false; }), &s), plain) << "oracle, k=" << k;
    EXPECT_GT(s.acceptance_rate(), 0.8) << "oracle drafts must be accepted (the last may run past the end)";
    EXPECT_GT(s.tokens_per_step(), 1.0 + 0.8 * k - 1e-9);
    EXPECT_EQ(s.plain_steps, 0) << "drafts that are accepted keep the gate open";
    EXPECT_EQ(run(m, k, make([](int) { return true; }), &s), plain) << "always wrong, k=" << k;
    EXPECT_EQ(s.accepted, 0);
    EXPECT_EQ(s.steps, 2) << "drafts that are never accepted close the gate";
    EXPECT_GT(s.plain_steps, 0);
    EXPECT_EQ(run(m, k, make([](int i) { return i % 3 == 1; }), &s), plain) << "sometimes wrong, k=" << k;
    EXPECT_GT(s.accepted, 0);
    EXPECT_LT(s.accepted, s.drafted);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SpeculativeGreedy, ::testing::Values("golden-mtp-v3", "trained-dsv3-kjv", "synth-fp8", "synth-bf16"),
                         test::ParamName());

}  // namespace
}  // namespace dsv3
