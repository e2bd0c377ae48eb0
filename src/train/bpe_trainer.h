// `dsv3 train-tokenizer`: byte-level BPE trained on a text with DeepSeek-V3's pre-tokenizer,
// written as a Hugging Face tokenizer.json (and tokenizer_config.json) that the inference
// tokenizer (tokenizer/tokenizer.h) loads unchanged.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3::train {

// Ids: 0 <｜begin▁of▁sentence｜>, 1 <｜end▁of▁sentence｜>, 2 <｜▁pad▁｜> (as DeepSeek-V3), then
// the 256 bytes, then the merges in the order they were learned, then DeepSeek-V3's other
// special tokens (<｜User｜>, <｜Assistant｜>, tool-call markers, ...).
constexpr int64_t kLeadingSpecials = 3;
int64_t trailing_special_count();
int64_t min_vocab_size();  // 3 + 256 + trailing specials: a byte-level tokenizer, no merges

struct BpeResult {
  std::string tokenizer_json, tokenizer_config_json;
  int64_t vocab_size = 0, merges = 0;
};

// Learns vocab - min_vocab_size() merges (fewer if the text runs out of pairs) from `text`
// (valid UTF-8). Most frequent pair first; ties go to the pair of smaller ids. Throws
// dsv3::Error when vocab < min_vocab_size() or the text is empty or not UTF-8.
BpeResult train_bpe(std::string_view text, int64_t vocab);

}  // namespace dsv3::train
