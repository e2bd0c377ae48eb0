// Batched decode: one step for several sequences at different positions gives, bit for bit,
// the logits each sequence gets when stepped alone.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "engine/sequence.h"
#include "model/synth.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

TEST(FeedBatch, EqualsSeparateStepsBitForBit) {
  const fs::path dir = fs::temp_directory_path() / ("dsv3_batch_test_" + std::to_string(::getpid()));
  SynthOptions o;
  o.out_dir = dir.string();
  o.progress = false;
  o.force = true;
  write_synthetic_checkpoint(synth_preset("tiny"), o);
  {
    LoadedModel m = load_model(dir.string());
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
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dsv3
