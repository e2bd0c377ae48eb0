// `dsv3 quantize` end to end: a file through the binary with its summary line, SIGINT leaving
// nothing half written, and bad input answered with one line and a non-zero exit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/cli/run_command.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using test::run_command;

const std::string kBin = DSV3_BINARY;
const std::string kKjv = (fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv").string();

class QuantizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("dsv3_quantize_cli_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  void expect_error(const std::string& args, const std::string& needle) {
    const auto r = run_command(kBin + " quantize " + args);
    EXPECT_NE(r.code, 0) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(test::count_lines(r.err), 1) << r.err;
  }
  fs::path root_;
};

TEST_F(QuantizeCli, WritesQ4_K_MWithItsSummary) {
  const std::string out = (root_ / "kjv-Q4_K_M.gguf").string();
  const auto r = run_command(kBin + " quantize --model " + kKjv + " --to q4_k_m --out " + out + " -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Q4_K_M, 92 tensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Q4_K "), std::string::npos) << r.out;
  EXPECT_TRUE(fs::is_regular_file(out));
  expect_error("--model " + kKjv + " --to Q8_0 --out " + out, "--force");
  EXPECT_EQ(run_command(kBin + " quantize --model " + kKjv + " --to Q8_0 --force --out " + out).code, 0);
}

// The file dsv3 writes is a model on its own: text in and out through its GGUF tokenizer and
// chat template, and its MTP layer (blk.4.nextn.*, without the embedding and head llama.cpp
// shares with the main model) drafts tokens that leave greedy output unchanged.
TEST_F(QuantizeCli, WrittenFileGeneratesWithItsMtpLayer) {
  const std::string out = (root_ / "kjv-Q8_0.gguf").string();
  ASSERT_EQ(run_command(kBin + " quantize --model " + kKjv + " --to Q8_0 --out " + out).code, 0);
  const std::string gen = kBin + " generate --model " + out + " --prompt 'Who was Moses?' -n 16 --print-ids";
  const auto plain = run_command(gen);
  ASSERT_EQ(plain.code, 0) << plain.err;
  const auto spec = run_command(gen + " --speculative mtp");
  ASSERT_EQ(spec.code, 0) << spec.err;
  const auto ids = [](const std::string& s) { return s.substr(s.find("ids:")); };
  ASSERT_NE(plain.out.find("ids:"), std::string::npos) << plain.out;
  ASSERT_NE(spec.out.find("ids:"), std::string::npos) << spec.out;
  EXPECT_EQ(ids(spec.out), ids(plain.out));
  EXPECT_NE((spec.out + spec.err).find("acceptance"), std::string::npos) << spec.out << spec.err;
}

// Whenever SIGINT lands, the output is complete or absent, and no temporary file is left.
TEST_F(QuantizeCli, SigintLeavesNothingHalfWritten) {
  const std::string out = (root_ / "x.gguf").string();
  const auto r = run_command("sh -c '" + kBin + " quantize --model " + kKjv + " --to Q2_K_XL -t 1 --out " + out +
                             " & pid=$!; sleep 0.05; kill -INT $pid; wait $pid'");
  if (r.code == 0) {
    EXPECT_TRUE(fs::is_regular_file(out));
  } else {
    EXPECT_FALSE(fs::exists(out)) << r.err;
  }
  for (const auto& e : fs::directory_iterator(root_))
    EXPECT_EQ(e.path().string(), out) << "left behind: " << e.path();
}

TEST_F(QuantizeCli, BadInput) {
  const std::string out = (root_ / "o.gguf").string();
  expect_error("--model " + (root_ / "missing").string() + " --out " + out, "not a checkpoint folder");
  const auto bad_to = run_command(kBin + " quantize --model " + kKjv + " --to Q3_K_S --out " + out);
  EXPECT_NE(bad_to.code, 0);
  EXPECT_NE(bad_to.err.find("unknown type 'Q3_K_S'"), std::string::npos) << bad_to.err;
  expect_error("--model " + kKjv + " --out " + root_.string(), "is a folder");
  expect_error("--model " + kKjv + " --out " + (root_ / "no" / "such" / "dir.gguf").string(), "cannot create");
  EXPECT_TRUE(fs::is_empty(root_));
}

}  // namespace
}  // namespace dsv3
