// The dsv3 binary end to end: train-tokenizer, train interrupted by SIGINT (the last checkpoint
// stays whole and loads), and `dsv3 logits` on the saved FP8 checkpoint reproducing the
// trainer's logits.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "../cli/run_command.h"
#include "io/npy.h"
#include "model/transformer.h"
#include "train/model.h"
#include "train/save.h"

namespace dsv3::train {
namespace {

namespace fs = std::filesystem;

std::string corpus() {
  const fs::path p = fs::temp_directory_path() / ("dsv3_cli_train_corpus_" + std::to_string(::getpid()) + ".txt");
  std::ofstream f(p);
  for (int i = 0; i < 3000; ++i) f << "And the " << (i % 7 ? "king" : "prophet") << " spake unto them, " << i % 13 << ".\n";
  return p.string();
}

TEST(TrainCli, SigintKeepsTheLastCheckpointAndLogitsMatch) {
  const fs::path run = fs::temp_directory_path() / ("dsv3_cli_train_run_" + std::to_string(::getpid()));
  fs::remove_all(run);
  const std::string text = corpus();
  const fs::path tok = fs::temp_directory_path() / ("dsv3_cli_tok_" + std::to_string(::getpid())) / "tokenizer.json";
  fs::create_directories(tok.parent_path());
  auto r = test::run_command(std::string(DSV3_BINARY) + " train-tokenizer --vocab 300 --text " + text + " --out " +
                             tok.string());
  ASSERT_EQ(r.code, 0) << r.err;

  const pid_t pid = fork();
  if (pid == 0) {
    const std::string out = run.string();
    execl(DSV3_BINARY, DSV3_BINARY, "train", "--preset", "test", "--data", text.c_str(), "--tokenizer",
          tok.string().c_str(), "--out", out.c_str(), "--steps", "100000", "--save-every", "3", "-q", nullptr);
    _exit(127);
  }
  const fs::path ckpt = run / "checkpoint";
  for (int i = 0; i < 600 && !fs::exists(ckpt / "train_state.bin"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // into the next saves
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_FALSE(fs::exists(run / "checkpoint.partial"));

  // The checkpoint is whole: it loads, and its FP8 logits are the trainer's.
  LoadedModel m = load_model(ckpt.string());
  Params<float> p(m.config);
  AdamW adam(p);
  TrainState st;
  load_train_state(ckpt.string(), p, adam, st);
  EXPECT_GT(st.step, 0);
  round_to_saved(p, SaveDType::FP8);
  const std::vector<int32_t> ids = {0, 40, 77, 101, 33, 290, 5, 71, 72, 73};
  std::vector<int32_t> tokens = ids;
  tokens.push_back(9);
  tokens.push_back(9);
  const int64_t Tn = int64_t(ids.size());
  TrainModel<float> model(p, Tn);
  model.keep_logits = true;
  model.run(Exec{}, tokens.data(), 1, Tn, LossOptions{0.3, 0}, 1.0, false);
  const fs::path npy = run / "logits.npy";
  std::string id_list;
  for (int32_t id : ids) id_list += (id_list.empty() ? "" : ",") + std::to_string(id);
  // The trainer computes in float32: the float32 kernels and cache give its function.
  r = test::run_command(std::string(DSV3_BINARY) + " --kernels f32 logits --kv-cache f32 --model " + ckpt.string() +
                        " --ids " + id_list + " --out " + npy.string() + " -t 1");
  ASSERT_EQ(r.code, 0) << r.err;
  const NpyArray a = read_npy_f32(npy.string());
  ASSERT_EQ(a.data.size(), model.logits.size());
  float d = 0;
  for (size_t i = 0; i < a.data.size(); ++i) d = std::max(d, std::fabs(a.data[i] - model.logits[i]));
  EXPECT_LT(d, 1e-4f);
  std::printf("dsv3 logits vs trainer: max |diff| %.3g over %zu logits\n", d, a.data.size());
}

}  // namespace
}  // namespace dsv3::train
