// `dsv3 perplexity` end to end: a synthetic tiny model carrying DeepSeek-V3's real tokenizer
// scored on a small text, and the golden tiny-v3 checkpoint scored on token ids; the fast path
// against the reference path (the accuracy target: top-1 agreement at every position,
// mean KL <= 1e-3); bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/synth.h"
#include "tests/cli/run_command.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::run_command;

const std::string kBin = DSV3_BINARY;
const std::string kGolden = std::string(DSV3_TESTDATA_DIR) + "/golden/tiny-v3";

// English prose with some punctuation, digits and non-ASCII (bits per byte counts UTF-8 bytes).
const char* kText =
    "The quick brown fox jumps over the lazy dog. Perplexity measures how well a model predicts a sample: "
    "it is the exponential of the average negative log-likelihood per token. A model that spreads its "
    "probability evenly over a vocabulary of V tokens has perplexity V.\n\n"
    "Mixture-of-experts layers route each token to a few experts out of many; DeepSeek-V3 selects 8 of 256 "
    "routed experts plus one shared expert. Multi-head latent attention caches 576 values per token and "
    "layer instead of 32768. Caf\xc3\xa9, na\xc3\xafve, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, 3.14159.\n";

class PerplexityCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fs::temp_directory_path() / ("dsv3_perplexity_test_" + std::to_string(::getpid())));
    fs::create_directories(*root_);
    SynthOptions opt;
    opt.out_dir = (*root_ / "tiny").string();
    opt.seed = 3;
    opt.progress = false;
    opt.tokenizer_dir = DSV3_TOKENIZER_DIR;
    write_synthetic_checkpoint(synth_preset("tiny"), opt);
    std::ofstream(*root_ / "text.txt") << kText;
    // Ids for the golden checkpoint (vocab 1024): BOS then a fixed pseudo-random walk.
    std::ofstream ids(*root_ / "ids.txt");
    ids << 0;
    for (int i = 1; i < 200; ++i) ids << (i % 10 ? ' ' : '\n') << (i * 7919 + 13) % 1024;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }
  static std::string tiny() { return (*root_ / "tiny").string(); }
  static std::string text() { return (*root_ / "text.txt").string(); }
  static std::string ids() { return (*root_ / "ids.txt").string(); }

  static json run_json(const std::string& args) {
    const auto r = run_command(kBin + " perplexity " + args + " --json");
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) return json::object();
    return json::parse(r.out);
  }
  static void print_figures(const json& j, const std::string& what) {
    std::printf("[%s] ppl %.4f ppl_reference %.4f kl_mean %.3e kl_max %.3e top1 %.6f (flip margin %.3g) "
                "scored %lld kernels %s kv %s\n",
                what.c_str(), j["ppl"].get<double>(), j["ppl_reference"].get<double>(), j["kl_mean"].get<double>(),
                j["kl_max"].get<double>(), j["top1_agreement"].get<double>(), j["top1_flip_margin_max"].get<double>(),
                j["tokens_scored"].get<long long>(), j["kernels"].get<std::string>().c_str(),
                j["kv_cache"].get<std::string>().c_str());
  }
  // The accuracy target, met by the fast kernels and MLA forms with an F32 cache: the
  // same top-1 token at every position, mean KL <= 1e-3 (measured: ~1e-12).
  static void expect_exact_agreement(const json& j, const std::string& what) {
    ASSERT_TRUE(j.contains("kl_mean")) << j.dump();
    print_figures(j, what);
    EXPECT_LE(j["kl_mean"].get<double>(), 1e-3) << what;
    EXPECT_GE(j["kl_max"].get<double>(), j["kl_mean"].get<double>()) << what;
    EXPECT_EQ(j["top1_agreement"].get<double>(), 1.0) << what;
    EXPECT_NEAR(j["ppl"].get<double>(), j["ppl_reference"].get<double>(), 1e-6 * j["ppl_reference"].get<double>());
  }
  // The default BF16 latent cache rounds c_kv and k_pe to 8 significant bits, which moves the
  // logits by a few hundredths on these random-weight models: mean KL stays far below 1e-3, but
  // where the reference's top two logits are that close the top-1 token can flip. Such flips
  // are allowed only at near-ties (margin under 0.1 logit) and at under 5% of the positions.
  static void expect_bf16_cache_agreement(const json& j, const std::string& what) {
    ASSERT_TRUE(j.contains("kl_mean")) << j.dump();
    print_figures(j, what);
    EXPECT_LE(j["kl_mean"].get<double>(), 1e-3) << what;
    EXPECT_GE(j["top1_agreement"].get<double>(), 0.95) << what;
    EXPECT_LE(j["top1_flip_margin_max"].get<double>(), 0.1) << what;
    EXPECT_NEAR(j["ppl"].get<double>(), j["ppl_reference"].get<double>(), 1e-2 * j["ppl_reference"].get<double>());
  }
  static fs::path* root_;
};
fs::path* PerplexityCli::root_ = nullptr;

TEST_F(PerplexityCli, TextWithRealTokenizerMatchesReference) {
  // The float32 kernels (--kernels f32) isolate what the cache and the MLA forms cost; the
  // default BF16 activations are held to their own bounds below.
  const json j =
      run_json("--kernels f32 --model " + tiny() + " --text " + text() + " --ctx 64 -t 2 --compare-reference");
  ASSERT_TRUE(j.contains("ppl")) << j.dump();
  const double ppl = j["ppl"].get<double>(), bpb = j["bits_per_byte"].get<double>();
  EXPECT_TRUE(std::isfinite(ppl));
  EXPECT_GT(ppl, 1.0);
  EXPECT_TRUE(std::isfinite(bpb));
  EXPECT_GT(bpb, 0.0);
  EXPECT_EQ(j["text_bytes"].get<int64_t>(), int64_t(std::strlen(kText)));
  EXPECT_GT(j["windows"].get<int64_t>(), 1);
  // bits per byte is total NLL in bits over the bytes of the scored tokens.
  EXPECT_NEAR(bpb, j["nll_mean"].get<double>() * j["tokens_scored"].get<double>() / std::log(2.0) /
                       j["bytes_scored"].get<double>(), 1e-9 * bpb);
  expect_bf16_cache_agreement(j, "synth tiny + tokenizer, ctx 64, bf16 cache");
  expect_exact_agreement(
      run_json("--kernels f32 --model " + tiny() + " --text " + text() +
               " --ctx 64 -t 2 --kv-cache f32 --compare-reference"),
      "synth tiny + tokenizer, ctx 64, f32 cache");
}

TEST_F(PerplexityCli, SlidingWindowScoresEveryByte) {
  const json j = run_json("--model " + tiny() + " --text " + text() + " --ctx 32 --stride 8 -t 2");
  ASSERT_TRUE(j.contains("ppl")) << j.dump();
  EXPECT_EQ(j["tokens_scored"].get<int64_t>(), j["tokens"].get<int64_t>() - 1);
  EXPECT_EQ(j["bytes_scored"].get<int64_t>(), j["text_bytes"].get<int64_t>());
  EXPECT_FALSE(j.contains("kl_mean"));
}

TEST_F(PerplexityCli, GoldenIdsMatchReference) {
  const json j = run_json("--kernels f32 --model " + kGolden + " --ids " + ids() + " --ctx 64 -t 2 --compare-reference");
  ASSERT_TRUE(j.contains("ppl")) << j.dump();
  EXPECT_TRUE(j["bits_per_byte"].is_null());
  EXPECT_EQ(j["tokens"].get<int64_t>(), 200);
  expect_bf16_cache_agreement(j, "golden tiny-v3, ctx 64, bf16 cache");
  const std::string f32 =
      "--kernels f32 --model " + kGolden + " --ids " + ids() + " --ctx 64 -t 2 --kv-cache f32 --compare-reference";
  expect_exact_agreement(run_json(f32), "golden tiny-v3, ctx 64, f32 cache");
  // Decode path (absorbed MLA, one token per forward call) and chunked prefill.
  expect_exact_agreement(run_json(f32 + " --ubatch 1"), "golden tiny-v3, ctx 64, f32 cache, ubatch 1");
  expect_exact_agreement(run_json(f32 + " --ubatch 5 --stride 16"), "golden tiny-v3, ctx 64 stride 16, f32, ubatch 5");
}

// --kernels avx512bf16 (the default where the CPU has AVX-512 BF16) rounds the activations of
// BF16/FP8 weights to BF16 (8 significant bits), as DeepSeek's inference does: not held to the
// float32 kernels' exact-agreement target. Measured on
// golden tiny-v3 (F32 cache): mean KL 7.7e-4 (prefill) and 1.7e-3 (decode path), top-1 agreement
// 0.98 in both, perplexity within 0.2%. The bounds (mean KL <= 5e-3, >= 95% agreement,
// perplexity within 1%) catch a wrong scale or a dropped block, which move KL by orders of
// magnitude; the kernels' own tests check the arithmetic bit for bit.
TEST_F(PerplexityCli, Bf16ActivationsStayCloseToTheReference) {
  const std::string args = "--kernels avx512bf16 --model " + kGolden + " --ids " + ids() +
                            " --ctx 64 -t 2 --kv-cache f32 --compare-reference";
  const auto probe = run_command(kBin + " perplexity " + args + " --json");
  if (probe.code != 0 && probe.err.find("this CPU lacks") != std::string::npos) GTEST_SKIP() << probe.err;
  for (const std::string extra : {"", " --ubatch 1"}) {
    const json j = run_json(args + extra);
    ASSERT_TRUE(j.contains("kl_mean")) << j.dump();
    print_figures(j, "golden tiny-v3, avx512bf16, f32 cache" + extra);
    EXPECT_EQ(j["kernels"].get<std::string>(), "avx512bf16");
    EXPECT_GT(j["kl_mean"].get<double>(), 1e-9) << "float32 agreement: were the activations rounded at all?";
    EXPECT_LE(j["kl_mean"].get<double>(), 5e-3) << extra;
    EXPECT_GE(j["top1_agreement"].get<double>(), 0.95) << extra;
    EXPECT_NEAR(j["ppl"].get<double>(), j["ppl_reference"].get<double>(), 1e-2 * j["ppl_reference"].get<double>());
  }
}

// The owner's bar for the default numerics (issue 20): on the trained models/dsv3-kjv over a real
// text, mean KL(reference || defaults) <= 2e-4 and top-1 agreement >= 99%, in the prefill path
// (whole windows, expanded MLA) and the decode path (--ubatch 1, absorbed MLA). The defaults are
// whatever this CPU gets (avx512bf16 and the BF16 latent cache on AVX-512 BF16 CPUs, float32
// kernels elsewhere). The text is Revelation 20:9-22:21 (7,880 bytes, 2,169 targets, ctx 256);
// measured on an AMD EPYC (Zen 5) with avx512bf16: 1.5e-4 / 0.9959 (prefill) and 1.6e-4 /
// 0.9959 (decode). docs/kernels.md has the 20,000- and 100,000-byte figures. Mean KL over a few
// thousand positions is dominated by its few largest terms (expert choices that flip at
// near-ties), so this is a check that the defaults stay at the bar, not a measure of margin.
TEST_F(PerplexityCli, DefaultsMeetTheOwnersBarOnTheTrainedModel) {
  const std::string root = fs::path(DSV3_TESTDATA_DIR).parent_path().string();
  const std::string args = "--model " + root + "/models/dsv3-kjv --text " + std::string(DSV3_TESTDATA_DIR) +
                           "/text/kjv-revelation-20-22.txt --ctx 256 -t 2 --compare-reference";
  for (const std::string extra : {"", " --ubatch 1"}) {
    const json j = run_json(args + extra);
    ASSERT_TRUE(j.contains("kl_mean")) << j.dump();
    print_figures(j, "models/dsv3-kjv, the defaults" + extra);
    EXPECT_EQ(j["tokens_scored"].get<int64_t>(), 2169);
    EXPECT_LE(j["kl_mean"].get<double>(), 2e-4) << extra;
    EXPECT_GE(j["top1_agreement"].get<double>(), 0.99) << extra;
  }
}

TEST_F(PerplexityCli, TextReport) {
  const auto r = run_command(kBin + " perplexity --model " + tiny() + " --text " + text() + " --ctx 64 -t 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("perplexity: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bits per byte: "), std::string::npos) << r.out;
}

TEST_F(PerplexityCli, BadInput) {
  auto fails_with = [](const std::string& args, const std::string& needle) {
    const auto r = run_command(kBin + " perplexity " + args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
  };
  fails_with("--model " + tiny() + " --text /nonexistent/text.txt", "cannot open");
  fails_with("--model " + tiny(), "exactly one of --text FILE or --ids FILE");
  fails_with("--model " + tiny() + " --text " + text() + " --ids " + ids(), "excludes");
  fails_with("--model " + kGolden + " --text " + text(), "tokenizer.json");
  fails_with("--model " + kGolden + " --ids " + ids() + " --ctx 5000", "exceeds the model's context");
  fails_with("--kernels avx513 --model " + kGolden + " --ids " + ids(), "unknown kernel variant");
  fails_with("--model " + kGolden + " --ids " + ids() + " --ctx 8 --stride 9", "--stride");
  std::ofstream(*root_ / "empty.txt") << "";
  fails_with("--model " + tiny() + " --text " + (*root_ / "empty.txt").string(), "at least 2 tokens");
  std::ofstream(*root_ / "bad_ids.txt") << "0 5 x 7";
  fails_with("--model " + kGolden + " --ids " + (*root_ / "bad_ids.txt").string(), "is not a token id");
  std::ofstream(*root_ / "big_ids.txt") << "0 5 99999";
  fails_with("--model " + kGolden + " --ids " + (*root_ / "big_ids.txt").string() + " --compare-reference", "99999");
}

}  // namespace
}  // namespace dsv3
