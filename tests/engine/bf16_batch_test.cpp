// Continuous batching's contract under the avx512bf16 kernels (BF16 activations for BF16 and
// FP8 weights): a sequence gets the same bits whether it is stepped alone, batched with others,
// or its prompt is fed in chunks, and a prompt long enough for the many-token GEMM gives the
// bits of token-by-token decode (speculative decoding's verify step relies on it). The kernel
// variant is chosen once per process, so these tests have an executable of their own.
#include <gtest/gtest.h>

#include <algorithm>

#include <span>
#include <string>

#include "engine/sequence.h"
#include "kernels/variant.h"
#include "tests/engine/tiny_model.h"

namespace dsv3 {
namespace {

// Selects avx512bf16 for this process; empty if it could, else why not.
std::string use_bf16_kernels() {
  for (const kernels::Variant* v : kernels::compiled_variants()) {
    if (std::string(v->name) != "avx512bf16") continue;
    const std::string missing = kernels::missing_cpu_feature(*v);
    if (!missing.empty()) return "this CPU lacks " + missing + ", needed by avx512bf16";
    kernels::select_variant("avx512bf16");
    return "";
  }
  return "avx512bf16 is not compiled for this architecture";
}

using Span = std::span<const int32_t>;

TEST(Bf16Kernels, ChunkedAndBatchedSequencesEqualEachAlone) {
  if (const std::string why = use_bf16_kernels(); !why.empty()) GTEST_SKIP() << why;
  ASSERT_STREQ(kernels::active().name, "avx512bf16");
  for (bool fp8 : {true, false}) {
    const LoadedModel& m = tiny_model(fp8);
    ThreadPool pool(2);
    const std::vector<int32_t> prompt = {0, 17, 230, 45, 9, 9, 812, 3, 77, 5, 640}, one = {21};
    Sequence alone(*m.model, 64), chunked(*m.model, 64), other(*m.model, 64);
    feed_step(std::vector<Sequence*>{&alone}, std::vector<Span>{prompt}, pool);
    other.feed(std::vector<int32_t>{0, 4, 8}, pool);
    const Span p(prompt);
    feed_step(std::vector<Sequence*>{&chunked, &other}, std::vector<Span>{p.subspan(0, 4), one}, pool);
    feed_step(std::vector<Sequence*>{&other, &chunked}, std::vector<Span>{one, p.subspan(4)}, pool);
    EXPECT_EQ(chunked.logits(), alone.logits()) << (fp8 ? "FP8" : "BF16");
    for (int step = 0; step < 3; ++step) {
      const std::vector<int32_t> t = {int32_t(100 + step)};
      feed_step(std::vector<Sequence*>{&alone}, std::vector<Span>{t}, pool);
      std::vector<Sequence*> both = {&other, &chunked};
      feed_batch(both, std::vector<int32_t>{21, t[0]}, pool);
      EXPECT_EQ(chunked.logits(), alone.logits()) << (fp8 ? "FP8" : "BF16") << " decode step " << step;
      EXPECT_EQ(chunked.hidden(), alone.hidden()) << (fp8 ? "FP8" : "BF16") << " decode step " << step;
    }
  }
}

TEST(Bf16Kernels, LongPromptThroughTheGemmEqualsTokenByToken) {
  if (const std::string why = use_bf16_kernels(); !why.empty()) GTEST_SKIP() << why;
  const kernels::Gemm* gemm = kernels::active().gemm;
  ASSERT_NE(gemm, nullptr);
  for (bool fp8 : {true, false}) {
    const LoadedModel& m = tiny_model(fp8);
    ThreadPool pool(2);
    std::vector<int32_t> prompt(size_t(std::max(gemm->min_tokens, gemm->min_tokens_fp8) + 13));
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7919 + 13) % 1000);
    Sequence whole(*m.model, 128), stepwise(*m.model, 128);
    feed_step(std::vector<Sequence*>{&whole}, std::vector<Span>{prompt}, pool);
    for (int32_t t : prompt) feed_step(std::vector<Sequence*>{&stepwise}, std::vector<Span>{Span(&t, 1)}, pool);
    EXPECT_EQ(whole.logits(), stepwise.logits()) << (fp8 ? "FP8" : "BF16");
    EXPECT_EQ(whole.hidden(), stepwise.hidden()) << (fp8 ? "FP8" : "BF16");
  }
}

}  // namespace
}  // namespace dsv3
