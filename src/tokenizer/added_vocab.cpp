// Leftmost-longest matching of added tokens with their lstrip/rstrip/single_word rules, as in
// tokenizers/src/tokenizer/added_vocabulary.rs (find_matches, split_with_indices).
#include "tokenizer/added_vocab.h"

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {

// Rust regex's Unicode \w: alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(char32_t c) {
  if (c < 0x80)
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  static const Regex word("^[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]$");
  std::string s;
  if (c < 0x800) {
    s = {static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))};
  } else if (c < 0x10000) {
    s = {static_cast<char>(0xE0 | (c >> 12)), static_cast<char>(0x80 | ((c >> 6) & 0x3F)),
         static_cast<char>(0x80 | (c & 0x3F))};
  } else {
    s = {static_cast<char>(0xF0 | (c >> 18)), static_cast<char>(0x80 | ((c >> 12) & 0x3F)),
         static_cast<char>(0x80 | ((c >> 6) & 0x3F)), static_cast<char>(0x80 | (c & 0x3F))};
  }
  std::vector<std::pair<size_t, size_t>> m;
  word.find_all(s, m);
  return !m.empty();
}

bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t end = s.size();
  return is_word_char(utf8::prev(s, end));
}

bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0;
  return is_word_char(utf8::next(s, i));
}

// Start of the run of whitespace that ends `s`.
size_t space_leftmost_at_end(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t e = end;
    if (!utf8::is_whitespace(utf8::prev(s, e))) break;
    end = e;
  }
  return end;
}

// Length of the run of whitespace that starts `s`.
size_t space_rightmost_at_start(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!utf8::is_whitespace(utf8::next(s, j))) break;
    i = j;
  }
  return i;
}

}  // namespace

void AddedVocab::Trie::add(std::string_view s, int32_t token) {
  int32_t n = 0;
  for (const char ch : s) {
    const auto b = static_cast<uint8_t>(ch);
    int32_t child = -1;
    for (const auto& [k, v] : nodes[n].next) {
      if (k == b) child = v;
    }
    if (child < 0) {
      child = static_cast<int32_t>(nodes.size());
      nodes[n].next.emplace_back(b, child);
      nodes.emplace_back();
    }
    n = child;
  }
  // Two tokens with the same content: the later one wins, as in a HashMap rebuild.
  nodes[n].token = token;
  first[static_cast<uint8_t>(s[0])] = true;
}

std::pair<size_t, int32_t> AddedVocab::Trie::longest(std::string_view text, size_t i) const {
  std::pair<size_t, int32_t> best{0, -1};
  int32_t n = 0;
  for (size_t k = i; k < text.size(); ++k) {
    const auto b = static_cast<uint8_t>(text[k]);
    int32_t child = -1;
    for (const auto& [key, v] : nodes[n].next) {
      if (key == b) {
        child = v;
        break;
      }
    }
    if (child < 0) break;
    n = child;
    if (nodes[n].token >= 0) best = {k + 1 - i, nodes[n].token};
  }
  return best;
}

AddedVocab::AddedVocab(const std::vector<AddedToken>& tokens) : tokens_(tokens) {
  for (size_t t = 0; t < tokens_.size(); ++t) {
    if (tokens_[t].content.empty()) continue;
    (tokens_[t].normalized ? normalized_ : raw_).add(tokens_[t].content, static_cast<int32_t>(t));
  }
}

void AddedVocab::find_matches(const Trie& trie, std::string_view text, size_t base,
                              std::vector<Segment>& out) const {
  size_t start_offset = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (!trie.first[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    const auto [len, t] = trie.longest(text, i);
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[t];
    size_t start = i, stop = i + len;
    i = stop;  // the automaton resumes after the raw match, whatever stripping does below
    if (tok.single_word) {
      const bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
      const bool stop_space = stop == text.size() || !starts_with_word(text.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) {
      // Spaces already taken by the previous match stay with it.
      start = std::max(space_leftmost_at_end(text.substr(0, start)), start_offset);
    }
    if (tok.rstrip) stop += space_rightmost_at_start(text.substr(stop));
    if (start_offset < start) out.push_back({base + start_offset, base + start, -1});
    out.push_back({base + start, base + stop, tok.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({base + start_offset, base + text.size(), -1});
}

void AddedVocab::split(std::string_view text, std::vector<Segment>& out) const {
  out.clear();
  if (text.empty()) return;
  if (raw_.empty()) {
    out.push_back({0, text.size(), -1});
  } else {
    find_matches(raw_, text, 0, out);
  }
  if (normalized_.empty()) return;
  // The normalizer is the identity (Tokenizer rejects others), so normalized tokens are
  // matched on the plain-text segments as they are.
  std::vector<Segment> first_pass;
  first_pass.swap(out);
  for (const Segment& s : first_pass) {
    if (s.id >= 0) {
      out.push_back(s);
    } else {
      find_matches(normalized_, text.substr(s.begin, s.end - s.begin), s.begin, out);
    }
  }
}

}  // namespace dsv3
