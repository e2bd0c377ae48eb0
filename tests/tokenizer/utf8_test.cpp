// Lossy UTF-8 decoding follows the maximal-subpart rule (Unicode 15, Table 3-8 examples).
#include "tokenizer/utf8.h"

#include <gtest/gtest.h>

namespace dsv3 {
namespace {

std::string lossy(std::string_view s) {
  std::string out;
  utf8::append_lossy(out, s);
  return out;
}

const std::string R = "\xEF\xBF\xBD";

TEST(Utf8, ValidTextIsUnchanged) {
  EXPECT_EQ(lossy("héllo 你好 😀"), "héllo 你好 😀");
  EXPECT_EQ(utf8::first_invalid("héllo 你好 😀"), std::string("héllo 你好 😀").size());
}

TEST(Utf8, MaximalSubparts) {
  // The example of Unicode Table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64.
  EXPECT_EQ(lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a" + R + R + R + "b" + R + "c" + R + R + "d");
  EXPECT_EQ(lossy("\xC0\xAF"), R + R);                  // overlong lead is never valid
  EXPECT_EQ(lossy("\xED\xA0\x80"), R + R + R);          // surrogate
  EXPECT_EQ(lossy("\xF4\x90\x80\x80"), R + R + R + R);  // above U+10FFFF
  EXPECT_EQ(lossy("\xE4\xBD"), R);                      // truncated at the end
  EXPECT_EQ(utf8::first_invalid("ab\xE4\xBD"), 2u);
}

TEST(Utf8, StablePrefixHoldsOnlyATruncatedStart) {
  EXPECT_EQ(utf8::stable_prefix("abc"), 3u);
  EXPECT_EQ(utf8::stable_prefix("ab\xE4"), 2u);
  EXPECT_EQ(utf8::stable_prefix("ab\xE4\xBD"), 2u);
  EXPECT_EQ(utf8::stable_prefix("ab\xE4\xBD\xA0"), 5u);
  EXPECT_EQ(utf8::stable_prefix("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(utf8::stable_prefix("\xE4\x41"), 2u);  // dead already: emit
  EXPECT_EQ(utf8::stable_prefix("\x80"), 1u);
}

TEST(Utf8, WhiteSpaceProperty) {
  for (char32_t c : {U'\t', U' ', U'\x85', U'\xA0', U'\u2003', U'\u3000'})
    EXPECT_TRUE(utf8::is_whitespace(c));
  for (char32_t c : {U'a', U'\u200B', U'\uFEFF', U'\u180E'}) EXPECT_FALSE(utf8::is_whitespace(c));
}

}  // namespace
}  // namespace dsv3
