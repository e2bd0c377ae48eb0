// Split semantics from tokenizers/src/pre_tokenizers/split.rs and normalizer.rs (Isolated:
// every match and every gap between matches becomes its own piece; empty pieces are dropped).
#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {
namespace {

// GPT-2's pattern, used by ByteLevel when use_regex is true (pre_tokenizers/byte_level.rs).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string quote_literal(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}-#&~ ").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

PreTokenizer::PreTokenizer(const nlohmann::json& spec) {
  if (!spec.is_null()) add(spec);
}

void PreTokenizer::add(const nlohmann::json& spec) {
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : spec.at("pretokenizers")) add(p);
  } else if (type == "Split") {
    const auto& pattern = spec.at("pattern");
    const std::string behavior = spec.value("behavior", "");
    DSV3_CHECK(behavior == "Isolated", "unsupported Split behavior \"", behavior,
               "\" (only Isolated is implemented)");
    DSV3_CHECK(!spec.value("invert", false), "unsupported Split with invert: true");
    if (pattern.contains("Regex")) {
      splits_.emplace_back(pattern.at("Regex").get<std::string>());
    } else {
      splits_.emplace_back(quote_literal(pattern.at("String").get<std::string>()));
    }
  } else if (type == "ByteLevel") {
    DSV3_CHECK(!spec.value("add_prefix_space", false),
               "unsupported ByteLevel pre-tokenizer with add_prefix_space: true");
    if (spec.value("use_regex", true)) splits_.emplace_back(kGpt2Pattern);
  } else {
    fail("unsupported pre-tokenizer type \"", type, "\"");
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  out.clear();
  if (text.empty()) return;
  out.emplace_back(0, text.size());
  std::vector<std::pair<size_t, size_t>> next, matches;
  for (const Regex& re : splits_) {
    next.clear();
    for (const auto& [b, e] : out) {
      matches.clear();
      re.find_all(text.substr(b, e - b), matches);
      size_t prev = 0;
      for (const auto& [ms, me] : matches) {
        if (prev < ms) next.emplace_back(b + prev, b + ms);
        if (ms < me) next.emplace_back(b + ms, b + me);
        prev = me;
      }
      if (prev < e - b) next.emplace_back(b + prev, e);
    }
    out.swap(next);
  }
}

}  // namespace dsv3
