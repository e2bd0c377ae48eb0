#include "train/bpe_trainer.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/chat_template_known.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv3::train {

namespace {

// DeepSeek-V3's pre_tokenizer, verbatim from its tokenizer.json.
constexpr const char* kPreTokenizer = R"json({"type": "Sequence", "pretokenizers": [
 {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
 {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"}, "behavior": "Isolated", "invert": false},
 {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
 {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json";

const char* const kLeading[] = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"};
struct Special {
  const char* content;
  bool special;
};
const Special kTrailing[] = {
    {"<｜fim▁hole｜>", false},          {"<｜fim▁begin｜>", false},         {"<｜fim▁end｜>", false},
    {"<｜User｜>", false},              {"<｜Assistant｜>", false},         {"<|EOT|>", true},
    {"<｜tool▁calls▁begin｜>", false},  {"<｜tool▁calls▁end｜>", false},    {"<｜tool▁call▁begin｜>", false},
    {"<｜tool▁call▁end｜>", false},     {"<｜tool▁outputs▁begin｜>", false}, {"<｜tool▁outputs▁end｜>", false},
    {"<｜tool▁output▁begin｜>", false}, {"<｜tool▁output▁end｜>", false},   {"<｜tool▁sep｜>", false},
};

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

nlohmann::ordered_json added_token(int64_t id, const std::string& content, bool special) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", false}, {"special", special}};
}

}  // namespace

int64_t trailing_special_count() { return int64_t(std::size(kTrailing)); }
int64_t min_vocab_size() { return kLeadingSpecials + 256 + trailing_special_count(); }

BpeResult train_bpe(std::string_view text, int64_t vocab) {
  DSV3_CHECK(vocab >= min_vocab_size(), "train-tokenizer: --vocab ", vocab, " is smaller than 256 bytes + ",
             kLeadingSpecials + trailing_special_count(), " special tokens = ", min_vocab_size());
  DSV3_CHECK(!text.empty(), "train-tokenizer: the text is empty");
  DSV3_CHECK(utf8::first_invalid(text) == text.size(), "train-tokenizer: the text is not valid UTF-8");
  const int64_t target_merges = vocab - min_vocab_size();

  // Unique pre-tokenized pieces with their counts, as byte symbols (id = 3 + byte).
  const PreTokenizer pre(nlohmann::json::parse(kPreTokenizer));
  std::unordered_map<std::string_view, int64_t> counts;
  std::vector<std::pair<size_t, size_t>> pieces;
  size_t line_start = 0;
  while (line_start < text.size()) {  // by lines: same pieces, bounded regex subjects
    size_t end = text.find('\n', line_start);
    end = end == std::string_view::npos ? text.size() : end + 1;
    const std::string_view line = text.substr(line_start, end - line_start);
    pre.split(line, pieces);
    for (auto [b, e] : pieces) ++counts[line.substr(b, e - b)];
    line_start = end;
  }
  std::vector<std::pair<std::string_view, int64_t>> uniq(counts.begin(), counts.end());
  std::sort(uniq.begin(), uniq.end());  // deterministic word order
  std::vector<std::vector<int32_t>> words(uniq.size());
  std::vector<int64_t> freq(uniq.size());
  for (size_t w = 0; w < uniq.size(); ++w) {
    for (unsigned char ch : uniq[w].first) words[w].push_back(int32_t(kLeadingSpecials + ch));
    freq[w] = uniq[w].second;
  }

  std::vector<std::string> token_bytes(static_cast<size_t>(kLeadingSpecials));
  for (int b = 0; b < 256; ++b) token_bytes.push_back(std::string(1, char(b)));
  std::unordered_map<std::string, int32_t> id_of;
  for (int b = 0; b < 256; ++b) id_of[token_bytes[size_t(kLeadingSpecials + b)]] = int32_t(kLeadingSpecials + b);

  std::unordered_map<uint64_t, int64_t> pc;                 // pair -> count
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // pair -> words (may hold stale entries)
  auto add_word = [&](size_t w, int64_t sign, std::vector<uint64_t>* touched) {
    const auto& s = words[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      pc[k] += sign * freq[w];
      if (sign > 0) where[k].push_back(int32_t(w));
      if (touched) touched->push_back(k);
    }
  };
  for (size_t w = 0; w < words.size(); ++w) add_word(w, 1, nullptr);
  // Max-heap of (count, -left, -right): most frequent, then smallest ids. Stale entries are
  // skipped when popped (their count no longer matches).
  using Entry = std::tuple<int64_t, int64_t, int64_t>;
  std::priority_queue<Entry> heap;
  for (auto& [k, n] : pc) heap.emplace(n, -int64_t(k >> 32), -int64_t(k & 0xffffffffu));

  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<int32_t> stamp(words.size(), -1);
  while (int64_t(merges.size()) < target_merges && !heap.empty()) {
    auto [n, na, nb] = heap.top();
    heap.pop();
    const int32_t a = int32_t(-na), b = int32_t(-nb);
    const uint64_t key = pair_key(a, b);
    auto it = pc.find(key);
    if (it == pc.end() || it->second != n) continue;
    if (n < 2) break;  // nothing worth merging
    const std::string merged = token_bytes[size_t(a)] + token_bytes[size_t(b)];
    int32_t z;
    if (auto f = id_of.find(merged); f != id_of.end()) {
      z = f->second;
    } else {
      z = int32_t(token_bytes.size());
      token_bytes.push_back(merged);
      id_of[merged] = z;
    }
    merges.emplace_back(a, b);
    std::vector<int32_t> ws = std::move(where[key]);
    where.erase(key);
    std::vector<uint64_t> touched;
    for (int32_t w : ws) {
      if (stamp[size_t(w)] == int32_t(merges.size())) continue;
      stamp[size_t(w)] = int32_t(merges.size());
      auto& s = words[size_t(w)];
      bool has = false;
      for (size_t i = 0; i + 1 < s.size(); ++i) has |= (s[i] == a && s[i + 1] == b);
      if (!has) continue;
      add_word(size_t(w), -1, nullptr);
      std::vector<int32_t> out;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          out.push_back(z);
          ++i;
        } else {
          out.push_back(s[i]);
        }
      }
      s = std::move(out);
      add_word(size_t(w), 1, &touched);
    }
    pc.erase(key);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched)
      if (auto f = pc.find(k); f != pc.end() && f->second > 0) heap.emplace(f->second, -int64_t(k >> 32), -int64_t(k & 0xffffffffu));
  }

  // tokenizer.json
  auto vocab_string = [&](int32_t id) {
    std::string s;
    for (unsigned char ch : token_bytes[size_t(id)]) s += byte_level::char_for_byte(ch);
    return s;
  };
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  nlohmann::ordered_json model_vocab = nlohmann::ordered_json::object();
  for (int64_t i = 0; i < kLeadingSpecials; ++i) {
    added.push_back(added_token(i, kLeading[i], true));
    model_vocab[kLeading[i]] = i;
  }
  for (int32_t id = int32_t(kLeadingSpecials); id < int32_t(token_bytes.size()); ++id) model_vocab[vocab_string(id)] = id;
  int64_t next_id = int64_t(token_bytes.size());
  for (const Special& s : kTrailing) {
    added.push_back(added_token(next_id, s.content, s.special));
    model_vocab[s.content] = next_id++;
  }
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (auto [a, b] : merges) merge_list.push_back(vocab_string(a) + " " + vocab_string(b));

  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", nlohmann::ordered_json::array()}};
  j["pre_tokenizer"] = nlohmann::ordered_json::parse(kPreTokenizer);
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"},           {"dropout", nullptr},          {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},       {"byte_fallback", false},      {"vocab", model_vocab},
                {"merges", merge_list}};

  auto tok = [](const char* content) {
    return nlohmann::ordered_json{{"__type", "AddedToken"}, {"content", content}, {"lstrip", false},
                                  {"normalized", true}, {"rstrip", false}, {"single_word", false}};
  };
  nlohmann::ordered_json cfg;
  cfg["add_bos_token"] = true;
  cfg["add_eos_token"] = false;
  cfg["bos_token"] = tok(kLeading[0]);
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["eos_token"] = tok(kLeading[1]);
  cfg["legacy"] = true;
  cfg["model_max_length"] = 131072;
  cfg["pad_token"] = tok(kLeading[1]);
  cfg["sp_model_kwargs"] = nlohmann::ordered_json::object();
  cfg["unk_token"] = nullptr;
  cfg["tokenizer_class"] = "LlamaTokenizerFast";
  cfg["chat_template"] = known_templates::kDeepSeekV3;

  BpeResult r;
  r.tokenizer_json = j.dump(1) + "\n";
  r.tokenizer_config_json = cfg.dump(2) + "\n";
  r.vocab_size = next_id;
  r.merges = int64_t(merges.size());
  return r;
}

}  // namespace dsv3::train
