// End-to-end trainer tests on a small generated text: the loss falls, checkpoints load in the
// inference engine with the trainer's logits (F32, BF16, FP8), resuming reproduces the
// uninterrupted run bit for bit, the thread count does not change the result, and data-parallel
// ranks (threads standing in for MPI ranks) reach the single process's bits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/transformer.h"
#include "tests/train/thread_collectives.h"
#include "train/data_parallel.h"
#include "train/model.h"
#include "train/rng.h"
#include "train/save.h"
#include "train/trainer.h"

namespace dsv3::train {
namespace {

namespace fs = std::filesystem;

// A small corpus with structure to learn: 2400 lines from a tiny grammar.
std::string corpus_path() {
  static const std::string path = [] {
    // Per process: ctest runs the tests of this file in parallel processes.
    const fs::path p = fs::temp_directory_path() / ("dsv3_train_test_corpus_" + std::to_string(::getpid()) + ".txt");
    const char* subj[] = {"the king", "a man", "the people", "his servant", "the lord"};
    const char* verb[] = {"said unto", "went to", "spake with", "gave bread to", "blessed"};
    const char* obj[] = {"the city.", "his house.", "the priests.", "all israel.", "them."};
    Rng r(7);
    std::ofstream f(p);
    for (int i = 0; i < 2400; ++i)
      f << "And " << subj[r.below(5)] << " " << verb[r.below(5)] << " " << obj[r.below(5)] << "\n";
    return p.string();
  }();
  return path;
}

TrainOptions test_options(const std::string& out) {
  TrainOptions o = train_preset("test");
  o.text = corpus_path();
  o.out = out;
  o.quiet = true;
  fs::remove_all(out);
  return o;
}

std::string tmp(const std::string& name) {
  return (fs::temp_directory_path() / ("dsv3_train_" + name + "_" + std::to_string(::getpid()))).string();
}

TEST(Training, LossFallsBelowBound) {
  TrainOptions o = test_options(tmp("loss"));
  const TrainResult r = run_training(o);
  EXPECT_EQ(r.steps_done, 60);
  // Byte-level tokens of this grammar: the unigram baseline is ~4.2 bits/byte; 60 steps reach ~2.0.
  EXPECT_GT(r.unigram_bpb, 3.5);
  EXPECT_LT(r.val_bpb, 2.5);
  EXPECT_LT(r.val_bpb, r.unigram_bpb * 0.6);
}

// Trainer logits (from the saved master weights rounded to the stored dtype) against the
// inference engine's logits on the saved checkpoint.
void check_checkpoint(SaveDType dtype, float tol) {
  TrainOptions o = test_options(tmp("ckpt"));
  o.optim.steps = 20;
  o.save_dtype = dtype;
  run_training(o);
  const std::string dir = o.out + "/checkpoint";
  LoadedModel m = load_model(dir);
  Params<float> p(m.config);
  AdamW adam(p);
  TrainState st;
  load_train_state(dir, p, adam, st);
  EXPECT_EQ(st.step, 20);
  round_to_saved(p, dtype);
  const int64_t Tn = 24;
  std::vector<int32_t> tokens;
  Rng r(3);
  for (int64_t i = 0; i < Tn + 2; ++i) tokens.push_back(int32_t(3 + r.below(256)));
  TrainModel<float> model(p, Tn);
  model.keep_logits = true;
  model.run(Exec{}, tokens.data(), 1, Tn, LossOptions{0.3, 0}, 1.0, false);
  ThreadPool pool(1);
  KVCache cache = m.model->make_cache(Tn, DType::F32);
  const int64_t V = m.config.vocab_size;
  std::vector<float> logits(size_t(Tn * V)), hidden(size_t(Tn * m.config.hidden_size)), mtp(size_t(Tn * V));
  std::vector<int32_t> in(tokens.begin(), tokens.begin() + Tn), next(tokens.begin() + 1, tokens.begin() + 1 + Tn);
  m.model->forward(in, 0, cache, logits.data(), true, pool, nullptr, hidden.data());
  m.model->mtp_forward(0, next, hidden.data(), 0, cache, mtp.data(), true, pool);
  float d = 0, dm = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    d = std::max(d, std::fabs(logits[i] - model.logits[i]));
    dm = std::max(dm, std::fabs(mtp[i] - model.mtp_logits[i]));
  }
  EXPECT_LT(d, tol) << "main logits";
  EXPECT_LT(dm, tol) << "MTP logits";
  std::printf("max |logits diff| %.3g (main), %.3g (MTP)\n", d, dm);
}

TEST(Checkpoint, F32LogitsMatchInference) { check_checkpoint(SaveDType::F32, 1e-4f); }
TEST(Checkpoint, BF16LogitsMatchInference) { check_checkpoint(SaveDType::BF16, 1e-4f); }
TEST(Checkpoint, FP8LogitsMatchInference) { check_checkpoint(SaveDType::FP8, 1e-4f); }

std::vector<float> saved_params(const std::string& out) {
  const ModelConfig c = ModelConfig::from_file(out + "/checkpoint/config.json");
  Params<float> p(c);
  AdamW adam(p);
  TrainState st;
  load_train_state(out + "/checkpoint", p, adam, st);
  std::vector<float> all = p.data;
  all.insert(all.end(), adam.m.begin(), adam.m.end());
  all.insert(all.end(), adam.v.begin(), adam.v.end());
  return all;
}

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return s;
}

// Strips the timing columns (tokens_per_s, elapsed_s) from a train.csv.
std::string losses_only(const std::string& csv) {
  std::string out, line;
  std::istringstream in(csv);
  while (std::getline(in, line)) {
    for (int i = 0; i < 2; ++i) line = line.substr(0, line.rfind(','));
    out += line + "\n";
  }
  return out;
}

TEST(Training, ResumeEqualsUninterrupted) {
  TrainOptions a = test_options(tmp("resume_a"));
  a.optim.steps = 30;
  run_training(a);
  TrainOptions b = test_options(tmp("resume_b"));
  b.optim.steps = 30;
  b.stop_after = 13;
  EXPECT_EQ(run_training(b).steps_done, 13);
  b.stop_after = -1;
  b.resume = true;
  EXPECT_EQ(run_training(b).steps_done, 30);
  EXPECT_EQ(saved_params(a.out), saved_params(b.out));
  EXPECT_EQ(losses_only(read(a.out + "/train.csv")), losses_only(read(b.out + "/train.csv")));
}

TEST(Training, ThreadCountDoesNotChangeResults) {
  TrainOptions a = test_options(tmp("threads1"));
  a.optim.steps = 8;
  a.threads = 1;
  run_training(a);
  TrainOptions b = test_options(tmp("threads3"));
  b.optim.steps = 8;
  b.threads = 3;
  run_training(b);
  EXPECT_EQ(saved_params(a.out), saved_params(b.out));
}

// Simulated FP8 training with gradient accumulation follows the F32 run closely.
TEST(Training, Fp8WithAccumulationTracksF32) {
  TrainOptions a = test_options(tmp("acc_f32"));
  a.optim.steps = 30;
  a.accum = 2;
  const TrainResult ra = run_training(a);
  TrainOptions b = test_options(tmp("acc_fp8"));
  b.optim.steps = 30;
  b.accum = 2;
  b.precision = Precision::FP8;
  const TrainResult rb = run_training(b);
  EXPECT_LT(rb.val_bpb, 0.8 * rb.unigram_bpb);
  EXPECT_LT(std::fabs(rb.val_loss - ra.val_loss) / ra.val_loss, 0.05) << ra.val_loss << " vs " << rb.val_loss;
}

// Data parallel with ranks as threads (the MPI version: tests/mpi/mpi_train_test.cpp). Three
// micro-batches: over 2 ranks rank 1 is idle in the second round, over 3 there is one round.
TEST(DataParallel, ThreadRanksEqualOneProcessBitForBit) {
  auto options = [](const std::string& name) {
    TrainOptions o = test_options(tmp(name));
    o.optim.steps = 6;
    o.batch = 2;
    o.accum = 3;
    return o;
  };
  const TrainOptions one = options("dp1");
  run_training(one);
  for (int n : {2, 3}) {
    const TrainOptions many = options("dp" + std::to_string(n));
    test::ThreadCollectives::run(n, [&](Collectives& c) { run_training(many, nullptr, &c); });
    EXPECT_EQ(saved_params(one.out), saved_params(many.out)) << n << " ranks";
    EXPECT_EQ(losses_only(read(one.out + "/train.csv")), losses_only(read(many.out + "/train.csv"))) << n << " ranks";
    EXPECT_EQ(read(one.out + "/balance.csv"), read(many.out + "/balance.csv")) << n << " ranks";
  }
}

TEST(DataParallel, AnErrorOfOneRankIsEveryRanksJobError) {
  std::vector<std::string> seen(3);
  test::ThreadCollectives::run(3, [&](Collectives& c) {
    try {
      run_agreed(c, [&] {
        if (c.rank() == 1) fail("cannot open the text");
      });
    } catch (const JobError& e) {
      seen[size_t(c.rank())] = e.what();
    }
  });
  for (const std::string& s : seen) EXPECT_EQ(s, "rank 1: cannot open the text");
}

TEST(DataParallel, RanksWithOtherSettingsAreRefused) {
  std::vector<std::string> seen(2);
  test::ThreadCollectives::run(2, [&](Collectives& c) {
    try {
      check_same_on_all_ranks(c, c.rank() == 0 ? 7 : 8, "training settings");
    } catch (const JobError& e) {
      seen[size_t(c.rank())] = e.what();
    }
  });
  for (const std::string& s : seen) EXPECT_EQ(s, "rank 1 was started with other training settings than rank 0");
}

}  // namespace
}  // namespace dsv3::train
