// Data-parallel `dsv3 train` under mpirun (one thread per rank): 2 and 3 ranks reach the single
// process's weights, Adam moments and logs bit for bit, a checkpoint written by 2 ranks resumes
// in one process, and the balancing bias moves by the loads of every rank's tokens.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/cli/run_command.h"
#include "train/save.h"

namespace dsv3::train {
namespace {

namespace fs = std::filesystem;
using test::run_command;

std::string mpirun(int np) { return std::string(DSV3_MPIRUN) + " -np " + std::to_string(np) + " "; }

fs::path tmp(const std::string& name) {
  return fs::temp_directory_path() / ("dsv3_mpi_train_" + name + "_" + std::to_string(::getpid()));
}

// 2500 lines (the held-out part needs 2000 or more) with a little structure.
std::string corpus() {
  static const std::string path = [] {
    const fs::path p = tmp("corpus.txt");
    std::ofstream f(p);
    const char* who[] = {"the king", "his servant", "the people", "a prophet"};
    for (int i = 0; i < 2500; ++i) f << "Then " << who[(i * 7) % 4] << " went up unto " << who[(i * 3) % 4] << ", " << i % 11 << ".\n";
    return p.string();
  }();
  return path;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// `dsv3 train` on the test preset: `steps` steps of `accum` micro-batches of 2 sequences, F32
// checkpoint. A new run folder unless `extra` holds --resume.
std::string train_cmd(const fs::path& out, const std::string& extra = "", int steps = 20, int accum = 4) {
  if (extra.find("--resume") == std::string::npos) fs::remove_all(out);
  return std::string(DSV3_BINARY) + " train --preset test --data " + corpus() + " --out " + out.string() +
         " --steps " + std::to_string(steps) + " --batch 2 --accum " + std::to_string(accum) +
         " --save-dtype f32 --eval-every 10 -t 1 -q " + extra;
}

// train.csv without its timing columns (tokens_per_s, elapsed_s).
std::string losses(const fs::path& out) {
  std::istringstream in(slurp(out / "train.csv"));
  std::string line, res;
  while (std::getline(in, line)) {
    for (int i = 0; i < 2; ++i) line = line.substr(0, line.rfind(','));
    res += line + "\n";
  }
  return res;
}

void expect_same_run(const fs::path& a, const fs::path& b, const std::string& what) {
  const std::string sa = slurp(a / "checkpoint/train_state.bin");
  ASSERT_FALSE(sa.empty()) << what;
  // Master weights, both Adam moments, step and settings: bit for bit.
  EXPECT_TRUE(sa == slurp(b / "checkpoint/train_state.bin")) << what << ": training states differ";
  EXPECT_TRUE(slurp(a / "checkpoint/model.safetensors") == slurp(b / "checkpoint/model.safetensors")) << what;
  EXPECT_EQ(losses(a), losses(b)) << what;
  EXPECT_EQ(slurp(a / "balance.csv"), slurp(b / "balance.csv")) << what;
}

TEST(MpiTrain, TwoAndThreeRanksEqualOneProcessBitForBit) {
  const fs::path one = tmp("np1");
  auto r = run_command(train_cmd(one));
  ASSERT_EQ(r.code, 0) << r.err;
  for (int np : {2, 3}) {  // 3 ranks: 4 micro-batches leave two ranks idle in the second round
    const fs::path many = tmp("np" + std::to_string(np));
    r = run_command(mpirun(np) + train_cmd(many));
    ASSERT_EQ(r.code, 0) << "np " << np << "\n" << r.out << r.err;
    expect_same_run(one, many, "np " + std::to_string(np));
  }
}

TEST(MpiTrain, CheckpointOfTwoRanksResumesInOneProcess) {
  const fs::path whole = tmp("whole"), split = tmp("split");
  auto r = run_command(train_cmd(whole));
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_command(mpirun(2) + train_cmd(split, "--stop-after 11"));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  r = run_command(train_cmd(split, "--resume"));
  ASSERT_EQ(r.code, 0) << r.err;
  expect_same_run(whole, split, "2 ranks for 11 steps, then 1 process");
}

TEST(MpiTrain, BiasMovesByTheLoadsOfAllRanks) {
  const fs::path out = tmp("bias");
  auto r = run_command(mpirun(2) + train_cmd(out, "--bias-gamma 0.25", 1));
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const std::string dir = (out / "checkpoint").string();
  const ModelConfig c = ModelConfig::from_file(dir + "/config.json");
  Params<float> p(c);
  AdamW adam(p);
  TrainState st;
  load_train_state(dir, p, adam, st);
  // balance.csv: step,layer,maxvio,load_0..load_{E-1} of step 0, one row per MoE layer.
  std::istringstream in(slurp(out / "balance.csv"));
  std::string line;
  std::getline(in, line);
  int rows = 0;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string cell;
    std::vector<double> v;
    while (std::getline(f, cell, ',')) v.push_back(std::stod(cell));
    ASSERT_EQ(v.size(), size_t(3 + c.n_routed_experts)) << line;
    const int64_t layer = int64_t(v[1]);
    std::vector<int64_t> load(v.begin() + 3, v.end());
    int64_t total = 0;
    for (int64_t l : load) total += l;
    // Every token of the step (4 micro-batches x 2 sequences x 32 positions, both ranks'),
    // top-k experts each.
    EXPECT_EQ(total, 4 * 2 * 32 * c.num_experts_per_tok) << "layer " << layer;
    // The MTP module's block is model.layers.{num_hidden_layers}, as in DeepSeek's files.
    const std::string name = "model.layers." + std::to_string(layer) + ".mlp.gate.e_score_correction_bias";
    const float* bias = nullptr;
    for (const ParamInfo& info : p.table)
      if (info.spec.name == name) bias = p.data.data() + info.offset;
    ASSERT_NE(bias, nullptr) << name;
    const double mean = double(total) / double(load.size());
    for (size_t e = 0; e < load.size(); ++e) {
      const float want = double(load[e]) < mean ? 0.25f : double(load[e]) > mean ? -0.25f : 0.0f;
      EXPECT_EQ(bias[e], want) << name << " expert " << e << " load " << load[e] << " mean " << mean;
    }
    ++rows;
  }
  EXPECT_EQ(rows, 2);  // the MoE layer and the MTP module's
}

TEST(MpiTrain, TooFewMicroBatchesForTheRanksIsOneClearError) {
  const fs::path out = tmp("few");
  const auto r = run_command(mpirun(2) + train_cmd(out, "", 20, 1));
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("--accum 1"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("rank 1"), std::string::npos) << "one line, from rank 0: " << r.err;
}

}  // namespace
}  // namespace dsv3::train
