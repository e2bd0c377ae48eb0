// Added tokens (special and not) and how they are cut out of the input before pre-tokenization,
// following AddedVocabulary::extract_and_normalize in Hugging Face `tokenizers`.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;       // the match also takes the whitespace before it
  bool rstrip = false;       // ... and after it
  bool single_word = false;  // matches only when not inside a word
  bool normalized = false;   // matched on normalized text, after the non-normalized tokens
};

// A piece of the input: an added token (`id` >= 0) or plain text to pre-tokenize (`id` == -1).
struct Segment {
  size_t begin = 0;
  size_t end = 0;
  int32_t id = -1;
};

class AddedVocab {
 public:
  AddedVocab() = default;
  explicit AddedVocab(const std::vector<AddedToken>& tokens);

  // Splits valid UTF-8 `text` into segments covering it in order. Non-normalized tokens are
  // matched first over the whole text, then normalized ones inside the remaining plain text;
  // each pass takes the leftmost-longest match (aho-corasick MatchKind::LeftmostLongest).
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  // Byte trie over token contents; one per pass.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> next;
      int32_t token = -1;  // index into tokens_ of the token ending here
    };
    std::vector<Node> nodes{1};
    std::array<bool, 256> first{};  // bytes some token starts with, to skip the rest fast
    bool empty() const { return nodes.size() == 1; }
    void add(std::string_view s, int32_t token);
    // Length and token of the longest match starting at text[i], or {0, -1}.
    std::pair<size_t, int32_t> longest(std::string_view text, size_t i) const;
  };

  // find_matches of added_vocabulary.rs for one pass over `text` (a slice at `base`).
  void find_matches(const Trie& trie, std::string_view text, size_t base,
                    std::vector<Segment>& out) const;

  std::vector<AddedToken> tokens_;
  Trie raw_;
  Trie normalized_;
};

}  // namespace dsv3
