// Streaming decode: every chunk is whole UTF-8 characters, and the chunks add up to decode().
#include "tokenizer/stream_decoder.h"

#include <gtest/gtest.h>

#include "test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

using test::RealTokenizerTest;

void expect_streams_like_decode(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                bool skip_special) {
  StreamDecoder stream(tok, skip_special);
  std::string all;
  for (const int32_t id : ids) {
    const std::string piece = stream.put(id);
    EXPECT_EQ(utf8::first_invalid(piece), piece.size()) << "broken UTF-8 after id " << id;
    all += piece;
  }
  all += stream.flush();
  EXPECT_EQ(all, tok.decode(ids, skip_special));
}

TEST_F(RealTokenizerTest, StreamMatchesDecodeOnAllCases) {
  for (const char* file : {"cases.jsonl", "decode.jsonl"}) {
    for (const auto& c : test::read_jsonl(test::testdata(file))) {
      SCOPED_TRACE(c["ids"].dump());
      const auto ids = c["ids"].get<std::vector<int32_t>>();
      expect_streams_like_decode(tok(), ids, false);
      expect_streams_like_decode(tok(), ids, true);
    }
  }
}

TEST_F(RealTokenizerTest, StreamHoldsBackIncompleteCharacters) {
  // 😀 is four byte tokens; with the special token in between skipped, nothing may come out
  // before the last byte arrives.
  StreamDecoder stream(tok(), /*skip_special=*/true);
  EXPECT_EQ(stream.put(175), "");
  EXPECT_EQ(stream.put(256), "");
  EXPECT_EQ(stream.put(1), "");
  EXPECT_EQ(stream.put(249), "");
  EXPECT_EQ(stream.put(225), "😀");
  EXPECT_EQ(stream.flush(), "");
}

TEST_F(RealTokenizerTest, StreamReplacesDeadSequencesAtOnce) {
  StreamDecoder stream(tok());
  // A lead byte followed by plain ASCII can never complete: U+FFFD comes out with the ASCII.
  EXPECT_EQ(stream.put(163), "");
  EXPECT_EQ(stream.put(tok().encode("a")[0]),
            "\xEF\xBF\xBD"
            "a");
  // A truncated character at the end of the stream is flushed as U+FFFD.
  EXPECT_EQ(stream.put(163), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
}

TEST_F(RealTokenizerTest, StreamOfRandomByteTokens) {
  // Byte-level tokens 0..255 of the vocabulary in a fixed pseudo-random order, so the stream
  // sees every kind of broken and valid sequence.
  std::vector<int32_t> ids;
  uint32_t x = 12345;
  for (int i = 0; i < 5000; ++i) {
    x = x * 1664525u + 1013904223u;
    if (x % 8 == 0) {  // now and then any token at all, special ones included
      ids.push_back(static_cast<int32_t>((x >> 8) % 128815));
    } else {
      const auto id = tok().token_to_id(byte_level::char_for_byte(static_cast<uint8_t>(x >> 24)));
      ASSERT_TRUE(id.has_value());
      ids.push_back(*id);
    }
  }
  expect_streams_like_decode(tok(), ids, false);
  expect_streams_like_decode(tok(), ids, true);
}

}  // namespace
}  // namespace dsv3
