// Batched decode: one step for several sequences at different positions gives, bit for bit,
// the logits each sequence gets when stepped alone.
#include <gtest/gtest.h>

#include <span>

#include "core/error.h"
#include "engine/sequence.h"
#include "kernels/variant.h"
#include "tests/engine/tiny_model.h"

namespace dsv3 {
namespace {

TEST(FeedBatch, EqualsSeparateStepsBitForBit) {
  const LoadedModel& m = tiny_model();
  ThreadPool pool(2);
  const std::vector<std::vector<int32_t>> prompts = {{0, 5, 9}, {0, 700, 12, 13, 14, 15, 16}, {0}, {0, 3, 3, 3, 3}};
  std::vector<Sequence> alone, batched;
  for (const auto& p : prompts) {
    alone.emplace_back(*m.model, 32);
    batched.emplace_back(*m.model, 32);
    alone.back().feed(p, pool);
    batched.back().feed(p, pool);
  }
  for (int step = 0; step < 4; ++step) {
    std::vector<Sequence*> seqs;
    std::vector<int32_t> toks;
    for (size_t i = 0; i < prompts.size(); ++i) {
      if (step == 2 && i == 1) continue;  // sequences join and leave between steps
      const int32_t t = int32_t((step * 37 + i * 11) % 1000);
      alone[i].feed(std::vector<int32_t>{t}, pool);
      seqs.push_back(&batched[i]);
      toks.push_back(t);
    }
    feed_batch(seqs, toks, pool);
    for (size_t i = 0; i < prompts.size(); ++i) {
      if (step == 2 && i == 1) continue;
      EXPECT_EQ(alone[i].logits(), batched[i].logits()) << "step " << step << " sequence " << i;
      EXPECT_EQ(alone[i].hidden(), batched[i].hidden()) << "step " << step << " sequence " << i;
      EXPECT_EQ(alone[i].pos(), batched[i].pos());
    }
    if (step == 2) {  // re-synchronise the skipped sequence
      alone[1].feed(std::vector<int32_t>{1}, pool);
      batched[1].feed(std::vector<int32_t>{1}, pool);
    }
  }
  std::vector<Sequence*> dup = {&batched[0], &batched[0]};
  EXPECT_THROW(feed_batch(dup, std::vector<int32_t>{1, 2}, pool), Error);
}

// Continuous batching's step: a prompt fed in chunks next to other sequences' decode tokens
// (and prompt chunks) gives the bits it gets fed alone in one piece, at every later step too.
TEST(FeedStep, PromptChunksAmongOtherSequencesEqualThePromptAlone) {
  const LoadedModel& m = tiny_model();
  ThreadPool pool(2);
  const std::vector<int32_t> prompt = {0, 17, 230, 45, 9, 9, 812, 3, 77, 5, 640};
  Sequence alone(*m.model, 64), chunked(*m.model, 64), other(*m.model, 64), late(*m.model, 64);
  feed_step(std::vector<Sequence*>{&alone}, std::vector<std::span<const int32_t>>{prompt}, pool);
  other.feed(std::vector<int32_t>{0, 4, 8}, pool);
  const std::span<const int32_t> p(prompt);
  const std::vector<int32_t> one = {21}, late_prompt = {0, 99, 98, 97};
  // Step 1: 4 prompt tokens next to a decode token; step 2: 5 more next to a decode token
  // and another prompt; step 3: the rest.
  feed_step(std::vector<Sequence*>{&chunked, &other}, std::vector<std::span<const int32_t>>{p.subspan(0, 4), one}, pool);
  feed_step(std::vector<Sequence*>{&other, &chunked, &late},
            std::vector<std::span<const int32_t>>{one, p.subspan(4, 5), late_prompt}, pool);
  feed_step(std::vector<Sequence*>{&late, &chunked}, std::vector<std::span<const int32_t>>{one, p.subspan(9)}, pool);
  EXPECT_EQ(chunked.pos(), alone.pos());
  EXPECT_EQ(chunked.logits(), alone.logits());
  EXPECT_EQ(chunked.hidden(), alone.hidden());
  for (int step = 0; step < 3; ++step) {
    const std::vector<int32_t> t = {int32_t(100 + step)};
    feed_step(std::vector<Sequence*>{&alone}, std::vector<std::span<const int32_t>>{t}, pool);
    feed_step(std::vector<Sequence*>{&other, &chunked, &late}, std::vector<std::span<const int32_t>>{one, t, one}, pool);
    EXPECT_EQ(chunked.logits(), alone.logits()) << "decode step " << step;
  }
  // The logits are those of the last token: the same as an ordinary prefill to rounding (that
  // one may take the expanded MLA form): float32 rounding with the float32 kernels; with BF16
  // activations the two forms round different products to BF16 (measured up to ~0.007 here),
  // so the bound there only catches gross errors.
  Sequence plain(*m.model, 64);
  plain.feed(prompt, pool);
  Sequence fs1(*m.model, 64);
  feed_step(std::vector<Sequence*>{&fs1}, std::vector<std::span<const int32_t>>{prompt}, pool);
  const double tol = kernels::active().bf16_activations ? 0.1 : 1e-4;
  for (size_t i = 0; i < plain.logits().size(); ++i) ASSERT_NEAR(fs1.logits()[i], plain.logits()[i], tol) << i;
}

}  // namespace
}  // namespace dsv3
