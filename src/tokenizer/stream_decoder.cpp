// Holding back only a trailing truncated character keeps the lossy decoding of the prefix equal
// to the lossy decoding of the whole (a lead byte always starts a new maximal subpart).
#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace dsv3 {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::put(int32_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.token_bytes(id);
  const size_t n = utf8::stable_prefix(pending_);
  std::string out;
  utf8::append_lossy(out, std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8::append_lossy(out, pending_);
  pending_.clear();
  return out;
}

}  // namespace dsv3
