// Golden cases computed with Hugging Face's tokenizer (testdata/tokenizer/README.md): every line
// of cases.jsonl and decode.jsonl must match exactly.
#include <gtest/gtest.h>

#include "core/error.h"
#include "test_support.h"

namespace dsv3 {
namespace {

using test::RealTokenizerTest;

std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

TEST_F(RealTokenizerTest, VocabularyAndSpecialIds) {
  EXPECT_EQ(tok().vocab_size(), 128815);
  EXPECT_EQ(tok().bos_id(), 0);
  EXPECT_EQ(tok().eos_id(), 1);
  EXPECT_TRUE(tok().add_bos_token());
  EXPECT_FALSE(tok().add_eos_token());
  EXPECT_EQ(tok().token_to_id("<｜User｜>"), 128803);
  EXPECT_EQ(tok().id_to_token(128804), "<｜Assistant｜>");
  EXPECT_EQ(tok().token_to_id("Ġworld"), 2058);
  EXPECT_EQ(tok().id_to_token(2058), "Ġworld");
  EXPECT_EQ(tok().token_bytes(2058), " world");
  EXPECT_EQ(tok().token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(tok().id_to_token(-1), std::nullopt);
  EXPECT_EQ(tok().id_to_token(129000), std::nullopt);
  EXPECT_TRUE(tok().is_special(0));
  EXPECT_FALSE(tok().is_special(128803));  // <｜User｜> is an added but non-special token
}

TEST_F(RealTokenizerTest, CasesJsonl) {
  const auto cases = test::read_jsonl(test::testdata("cases.jsonl"));
  ASSERT_GE(cases.size(), 70u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE("text: " + text.substr(0, 200));
    const std::vector<int32_t> ids = tok().encode(text);
    EXPECT_EQ(ids, ids_of(c["ids"]));
    EXPECT_EQ(tok().encode(text, /*add_special=*/true), ids_of(c["ids_with_special"]));
    EXPECT_EQ(tok().decode(ids_of(c["ids"])), c["decoded"].get<std::string>());
  }
}

TEST_F(RealTokenizerTest, DecodeJsonl) {
  const auto cases = test::read_jsonl(test::testdata("decode.jsonl"));
  ASSERT_GE(cases.size(), 8u);
  for (const auto& c : cases) {
    SCOPED_TRACE("ids: " + c["ids"].dump());
    const auto ids = ids_of(c["ids"]);
    EXPECT_EQ(tok().decode(ids), c["decoded"].get<std::string>());
    EXPECT_EQ(tok().decode(ids, /*skip_special=*/true),
              c["decoded_skip_special"].get<std::string>());
  }
}

TEST_F(RealTokenizerTest, IdsOutsideTheVocabularyAreDropped) {
  const std::vector<int32_t> ids = {19923, 128815, -5, 129279, 2058, 1 << 30};
  EXPECT_EQ(tok().decode(ids), "Hello world");
}

TEST_F(RealTokenizerTest, RoundTripsLongMixedText) {
  std::string text;
  for (int i = 0; i < 200; ++i) {
    text += "for (int i = 0; i < n; ++i) { sum += a[i] * 0.5; } // 计算 " +
            std::to_string(i * 7919) + " café\t\n  <｜User｜> ";
  }
  EXPECT_EQ(tok().decode(tok().encode(text)), text);
}

TEST_F(RealTokenizerTest, LongRunsDoNotOverflow) {
  const std::string spaces(200000, ' ');
  EXPECT_EQ(tok().decode(tok().encode("a" + spaces + "b")), "a" + spaces + "b");
  const std::string letters(300000, 'x');
  EXPECT_EQ(tok().decode(tok().encode(letters)), letters);
}

TEST_F(RealTokenizerTest, InvalidUtf8IsRejectedWithItsOffset) {
  try {
    tok().encode("ok \xC3\x28 bad");
    FAIL() << "expected dsv3::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3
