// Added-token matching rules (lstrip, rstrip, single_word, normalized order) on a tiny
// byte-level tokenizer written by the test; expectations follow added_vocabulary.rs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {
namespace {

// Byte b has id b; no merges; no pre-tokenizer, so plain text becomes its bytes.
Tokenizer tiny_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level::char_for_byte(static_cast<uint8_t>(b))] = b;
  auto added = [](int id, const char* content, bool lstrip, bool rstrip, bool single_word,
                  bool normalized) {
    return nlohmann::json{{"id", id},
                          {"content", content},
                          {"lstrip", lstrip},
                          {"rstrip", rstrip},
                          {"single_word", single_word},
                          {"normalized", normalized},
                          {"special", !normalized}};
  };
  nlohmann::json j = {
      {"added_tokens",
       {added(300, "<a>", true, false, false, false), added(301, "<b>", false, true, false, false),
        added(302, "tok", false, false, true, false), added(303, "<n>", false, false, false, true),
        added(304, "<n>x", false, false, false, false),
        added(305, "<long>", false, false, false, false),
        added(306, "<lo", false, false, false, false)}},
      {"normalizer", nullptr},
      {"pre_tokenizer", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  const auto path = std::filesystem::temp_directory_path() / "dsv3_tiny_tokenizer.json";
  std::ofstream(path) << j.dump();
  return Tokenizer::from_file(path);
}

std::vector<int32_t> bytes(std::string_view s) {
  return std::vector<int32_t>(reinterpret_cast<const uint8_t*>(s.data()),
                              reinterpret_cast<const uint8_t*>(s.data()) + s.size());
}

std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(AddedVocab, LstripTakesTheSpacesBefore) {
  const Tokenizer t = tiny_tokenizer();
  EXPECT_EQ(t.encode("x \t<a> y"), cat({bytes("x"), {300}, bytes(" y")}));
  EXPECT_EQ(t.encode("  <a>"), std::vector<int32_t>{300});
}

TEST(AddedVocab, RstripTakesTheSpacesAfter) {
  const Tokenizer t = tiny_tokenizer();
  EXPECT_EQ(t.encode("x <b>  y"), cat({bytes("x "), {301}, bytes("y")}));
}

TEST(AddedVocab, SingleWordOnlyOutsideWords) {
  const Tokenizer t = tiny_tokenizer();
  EXPECT_EQ(t.encode("a tok b"), cat({bytes("a "), {302}, bytes(" b")}));
  EXPECT_EQ(t.encode("tok"), std::vector<int32_t>{302});
  EXPECT_EQ(t.encode("atok b"), bytes("atok b"));
  EXPECT_EQ(t.encode("tok_"), bytes("tok_"));
  EXPECT_EQ(t.encode("étok"), bytes("étok"));
  EXPECT_EQ(t.encode("(tok)"), cat({bytes("("), {302}, bytes(")")}));
}

TEST(AddedVocab, NonNormalizedTokensAreMatchedFirst) {
  const Tokenizer t = tiny_tokenizer();
  EXPECT_EQ(t.encode("<n>x"), std::vector<int32_t>{304});
  EXPECT_EQ(t.encode("<n>y"), cat({{303}, bytes("y")}));
}

TEST(AddedVocab, LeftmostLongest) {
  const Tokenizer t = tiny_tokenizer();
  EXPECT_EQ(t.encode("<long>"), std::vector<int32_t>{305});
  EXPECT_EQ(t.encode("<lon>"), cat({{306}, bytes("n>")}));
}

TEST(AddedVocab, DecodeAndSkipSpecial) {
  const Tokenizer t = tiny_tokenizer();
  EXPECT_EQ(t.vocab_size(), 307);
  const std::vector<int32_t> ids = cat({bytes("x "), {300, 303}});
  EXPECT_EQ(t.decode(ids), "x <a><n>");
  EXPECT_EQ(t.decode(ids, true), "x <n>");
  EXPECT_EQ(t.bos_id(), std::nullopt);
}

}  // namespace
}  // namespace dsv3
