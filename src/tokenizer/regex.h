// A compiled PCRE2 pattern (UTF + UCP + JIT) with the match-iteration semantics of the
// Oniguruma regexes that Hugging Face `tokenizers` uses for its Split pre-tokenizer.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3 {

class Regex {
 public:
  // Throws dsv3::Error naming the pattern and PCRE2's message if it does not compile.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of all non-overlapping matches in `subject`, left to
  // right (an empty match moves the search on by one character, as the onig crate's find_iter).
  // Precondition: `subject` is valid UTF-8. Safe to call from several threads at once.
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so pcre2.h stays out of this header
  bool jit_ = false;
};

// Rewrites \s and \S to the Unicode White_Space set, the meaning Oniguruma gives them.
// PCRE2's UCP \s is "Z or \t\n\v\f\r", which misses U+0085 (NEL) for example.
std::string translate_onig_pattern(std::string_view pattern);

}  // namespace dsv3
