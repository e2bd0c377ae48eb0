// Bad input to the trainer: clear errors, never a crash or a half-written file.
#include <gtest/gtest.h>
#include <unistd.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "train/trainer.h"

namespace dsv3::train {
namespace {

namespace fs = std::filesystem;

std::string write_text(const std::string& name, const std::string& body) {
  const fs::path p = fs::temp_directory_path() / ("dsv3_bad_" + name + "_" + std::to_string(::getpid()));
  std::ofstream(p) << body;
  return p.string();
}

std::string lines(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "and it was so, line " + std::to_string(i) + ".\n";
  return s;
}

TrainOptions options(const std::string& text) {
  TrainOptions o = train_preset("test");
  o.text = text;
  o.out = (fs::temp_directory_path() / ("dsv3_bad_run_" + std::to_string(::getpid()))).string();
  o.quiet = true;
  fs::remove_all(o.out);
  return o;
}

// Runs and expects dsv3::Error whose message contains `part`.
void expect_error(const TrainOptions& o, const std::string& part) {
  try {
    run_training(o);
    FAIL() << "no error; expected one mentioning '" << part << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(BadInput, EmptyMissingAndTinyCorpus) {
  expect_error(options(write_text("empty.txt", "")), "empty");
  expect_error(options("/nonexistent/corpus.txt"), "cannot open");
  expect_error(options(write_text("tiny.txt", "In the beginning.\n")), "tokens, fewer than");
  expect_error(options(write_text("latin1.txt", "caf\xe9\n")), "UTF-8");
}

TEST(BadInput, SequenceLongerThanTheData) {
  TrainOptions o = options(write_text("small.txt", lines(2000)));
  o.seq_len = 4000;  // the validation part is ~2.7K bytes
  expect_error(o, "shorter --seq-len");
}

TEST(BadInput, InvalidHyperparameters) {
  const std::string text = write_text("ok.txt", lines(2000));
  TrainOptions o = options(text);
  o.optim.lr = -1e-3;
  expect_error(o, "--lr must be positive");
  o = options(text);
  o.model.num_experts_per_tok = o.model.n_routed_experts + 1;
  expect_error(o, "num_experts_per_tok");
  o = options(text);
  o.batch = 0;
  expect_error(o, "--batch");
  o = options(text);
  o.optim.steps = 0;
  expect_error(o, "--steps");
  o = options(text);
  o.model.scoring_func = "softmax";
  expect_error(o, "sigmoid");
  o = options(text);
  o.mtp_lambda = -1;
  expect_error(o, "--mtp-lambda");
  EXPECT_THROW(parse_balance("maybe"), Error);
  EXPECT_THROW(parse_save_dtype("int4"), Error);
}

TEST(BadInput, UnwritableOutputFolder) {
  if (::geteuid() == 0) {
    // root writes anywhere: use a path under a regular file instead.
    TrainOptions o = options(write_text("ok2.txt", lines(2000)));
    o.out = write_text("a_file", "x") + "/run";
    expect_error(o, "cannot create the run folder");
    return;
  }
  const fs::path ro = fs::temp_directory_path() / ("dsv3_bad_readonly_" + std::to_string(::getpid()));
  fs::create_directories(ro);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
  TrainOptions o = options(write_text("ok2.txt", lines(2000)));
  o.out = (ro / "run").string();
  expect_error(o, "cannot create the run folder");
  fs::permissions(ro, fs::perms::owner_all);
}

TEST(BadInput, ResumeWithOtherSettings) {
  TrainOptions o = options(write_text("ok3.txt", lines(2000)));
  o.optim.steps = 4;
  run_training(o);
  o.resume = true;
  o.optim.lr *= 2;
  try {
    run_training(o);
    FAIL() << "resumed with another learning rate";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("other settings"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3::train
