// The pre-tokenizer of tokenizer.json: a sequence of regex Splits (behaviour Isolated) followed by
// ByteLevel, which for BPE only means "work on bytes" (byte-level BPE maps bytes itself).
#pragma once
#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/regex.h"

namespace dsv3 {

class PreTokenizer {
 public:
  PreTokenizer() = default;
  // Reads the "pre_tokenizer" object of tokenizer.json. Throws dsv3::Error for types or options
  // this engine does not implement (anything beyond Split/Isolated, ByteLevel without prefix
  // space, and Sequence of those).
  explicit PreTokenizer(const nlohmann::json& spec);

  // Splits valid UTF-8 `text` into non-empty pieces, given as [begin, end) offsets into `text`.
  // Each Split applies to each piece of the previous one separately, so a look-ahead never sees
  // past the end of its piece.
  void split(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  void add(const nlohmann::json& spec);
  std::vector<Regex> splits_;
};

}  // namespace dsv3
