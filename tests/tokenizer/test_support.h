// Shared helpers for the tokenizer tests: the real DeepSeek-V3 tokenizer and the JSONL cases.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace dsv3::test {

inline std::filesystem::path real_tokenizer_dir() { return DSV3_TOKENIZER_DIR; }

inline std::filesystem::path testdata(const std::string& name) {
  return std::filesystem::path(DSV3_TESTDATA_DIR) / "tokenizer" / name;
}

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

// Loads the real tokenizer once per test binary. Tests using it must FAIL, not skip, when the
// files are missing, so a machine without them cannot pass the suite by accident.
class RealTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!tokenizer_ && std::filesystem::exists(real_tokenizer_dir() / "tokenizer.json")) {
      tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_dir(real_tokenizer_dir()));
    }
  }
  void SetUp() override {
    ASSERT_TRUE(tokenizer_) << "the DeepSeek-V3 tokenizer is missing from " << real_tokenizer_dir()
                            << ": run scripts/setup (or scripts/fetch-tokenizer)";
  }
  const Tokenizer& tok() const { return *tokenizer_; }

 private:
  static inline std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace dsv3::test
