// `dsv3 logits` on a damaged checkpoint: a non-zero exit and exactly one stderr line,
// "dsv3: error: ...", naming the file at fault (never a crash or a stack trace).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "checkpoint_builder.h"

namespace dsv3 {
namespace {

using namespace dsv3::testing;

struct Outcome {
  int exit_code = -1;  // -1: killed by a signal
  std::string err;
};

Outcome run_logits(const TempDir& dir, const std::string& model) {
  const std::string err_path = dir.file("stderr.txt");
  const std::string cmd = std::string("'") + DSV3_BINARY + "' logits --model '" + model + "' --ids 0,1 --out '" +
                          dir.file("x.npy") + "' > /dev/null 2> '" + err_path + "'";
  const int status = std::system(cmd.c_str());
  Outcome o;
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  o.err = read_bytes(err_path);
  return o;
}

class CliBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    tensors_ = checkpoint_tensors(config_);
    model_ = (dir_.path() / "model").string();
  }
  void write(size_t shards = 1) { write_checkpoint(model_, config_, tensors_, shards); }
  // Expects a clean failure whose single line names `file` and contains `what`.
  void expect_error(const std::string& file, const std::string& what) {
    const Outcome o = run_logits(dir_, model_);
    EXPECT_NE(o.exit_code, 0) << o.err;
    EXPECT_GT(o.exit_code, 0) << "killed by a signal: " << o.err;
    ASSERT_FALSE(o.err.empty());
    EXPECT_EQ(o.err.rfind("dsv3: error: ", 0), 0u) << o.err;
    EXPECT_EQ(o.err.find('\n'), o.err.size() - 1) << "not a single line: " << o.err;
    EXPECT_NE(o.err.find(file), std::string::npos) << o.err;
    EXPECT_NE(o.err.find(what), std::string::npos) << o.err;
    EXPECT_FALSE(std::filesystem::exists(dir_.file("x.npy")));
  }

  TempDir dir_{"cli"};
  ModelConfig config_ = small_test_config();
  std::vector<TensorDef> tensors_;
  std::string model_;
};

TEST_F(CliBadInput, IntactCheckpointRuns) {
  write(/*shards=*/2);
  const Outcome o = run_logits(dir_, model_);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(std::filesystem::exists(dir_.file("x.npy")));
}

TEST_F(CliBadInput, TruncatedShard) {
  write(/*shards=*/2);
  const std::string shard = model_ + "/" + shard_name(1, 2);
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) / 2);
  expect_error(shard, "beyond");
}

TEST_F(CliBadInput, MissingScaleInv) {
  erase_def(tensors_, "model.layers.1.mlp.experts.2.up_proj.weight_scale_inv");
  write();
  expect_error(model_ + "/model.safetensors", "'model.layers.1.mlp.experts.2.up_proj.weight'");
}

TEST_F(CliBadInput, GarbageHeader) {
  write();
  const std::string file = model_ + "/model.safetensors";
  std::string bytes = read_bytes(file);
  bytes.replace(8, 12, "not json!!!!");
  write_bytes(file, bytes);
  expect_error(file, "malformed JSON header");
}

TEST_F(CliBadInput, ConfigMissingAField) {
  write();
  nlohmann::json j = config_.to_json();
  j.erase("num_attention_heads");
  write_bytes(model_ + "/config.json", j.dump());
  expect_error(model_ + "/config.json", "'num_attention_heads'");
}

}  // namespace
}  // namespace dsv3
