// Incremental detokenization for streaming output: ids go in one at a time, text comes out only
// as whole UTF-8 characters, and the pieces concatenate to exactly Tokenizer::decode of all ids.
#pragma once
#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace dsv3 {

class StreamDecoder {
 public:
  // Keeps its own (cheap, shared) copy of `tokenizer`.
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);

  // Text completed by `id`: possibly empty while a multi-byte character is still incomplete.
  // Bytes that can no longer become a valid character are emitted as U+FFFD at once.
  std::string put(int32_t id);
  // Whatever is held back (an incomplete character at the end of the stream) as U+FFFD.
  std::string flush();
  // Drops held-back bytes, e.g. when a conversation is cleared.
  void reset() { pending_.clear(); }

 private:
  Tokenizer tokenizer_;
  bool skip_special_;
  std::string pending_;  // raw bytes not yet emitted; at most 3, a truncated character start
};

}  // namespace dsv3
