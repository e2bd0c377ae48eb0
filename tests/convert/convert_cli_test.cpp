// `dsv3 convert` end to end: a conversion through the binary, and bad input answered with a
// one-line error and a non-zero exit (never a crash, never a half-written folder).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/cli/run_command.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using test::run_command;

const std::string kBin = DSV3_BINARY;
const std::string kGolden = std::string(DSV3_TESTDATA_DIR) + "/golden/tiny-v3";

class ConvertCli : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("dsv3_convert_cli_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  void expect_error(const std::string& args, const std::string& needle) {
    const auto r = run_command(kBin + " convert " + args);
    EXPECT_EQ(r.code, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find("dsv3: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(test::count_lines(r.err), 1) << r.err;
  }
  fs::path root_;
};

TEST_F(ConvertCli, ConvertsTheGoldenCheckpointAndGenerateRunsOnIt) {
  const std::string out = (root_ / "bf16").string();
  const auto r = run_command(kBin + " convert --model " + kGolden + " --to bf16 --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("120 FP8 weights -> BF16"), std::string::npos) << r.out;
  const auto g = run_command(kBin + " generate --model " + out + " --prompt-ids 0,5,7 -n 4 --ignore-eos -t 1");
  EXPECT_EQ(g.code, 0) << g.err;
  // A second run into the same folder needs --force.
  const auto again = run_command(kBin + " convert --model " + kGolden + " --out " + out);
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
  EXPECT_EQ(run_command(kBin + " convert --model " + kGolden + " --out " + out + " --force").code, 0);
}

TEST_F(ConvertCli, BadInput) {
  expect_error("--model " + (root_ / "missing").string() + " --out " + (root_ / "o").string(), "not a checkpoint folder");
  fs::create_directories(root_ / "no_config");
  expect_error("--model " + (root_ / "no_config").string() + " --out " + (root_ / "o").string(), "no config.json");
  fs::create_directories(root_ / "full");
  std::ofstream(root_ / "full" / "x") << "x";
  expect_error("--model " + kGolden + " --out " + (root_ / "full").string(), "not empty (use --force");
  EXPECT_TRUE(fs::exists(root_ / "full" / "x"));
  // Unwritable: the output's parent is a regular file (fails for root too, unlike permissions).
  std::ofstream(root_ / "a_file") << "x";
  expect_error("--model " + kGolden + " --out " + (root_ / "a_file" / "out").string(), "cannot create the output folder");
  expect_error("--model " + kGolden + " --out " + kGolden + " --force", "is the input checkpoint folder");
  const auto bad_to = run_command(kBin + " convert --model " + kGolden + " --to fp16 --out " + (root_ / "o").string());
  EXPECT_NE(bad_to.code, 0);
  EXPECT_FALSE(fs::exists(root_ / "o"));
  EXPECT_FALSE(fs::exists(root_ / "o.partial"));
}

}  // namespace
}  // namespace dsv3
