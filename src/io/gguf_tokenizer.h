// The tokenizer of a Hugging Face checkpoint folder as GGUF metadata (tokenizer.ggml.* and
// tokenizer.chat_template), as llama.cpp's convert_hf_to_gguf.py (_set_vocab_gpt2) and gguf-py's
// SpecialVocab write it for DeepSeek models, built from tokenizer.json and tokenizer_config.json.
#pragma once
#include <cstdint>
#include <string>

namespace dsv3 {

class GgufWriter;

// tokenizer.ggml.* (model gpt2, pre-tokenizer, tokens, token types, merges, BOS/EOS/padding ids,
// add_bos/add_eos) and tokenizer.chat_template from the checkpoint folder `dir`: `vocab_size`
// tokens (the model's embedding rows), ids the tokenizer does not define as "[PAD<id>]" of type
// UNUSED. The pre-tokenizer is recognised from tokenizer.json's Split regexes ("deepseek-v3" or
// "deepseek-llm"); `pre` overrides that. Throws dsv3::Error naming the file on a missing or
// malformed tokenizer, an unrecognised pre-tokenizer without `pre`, or a token id outside
// [0, vocab_size).
void add_tokenizer_metadata(GgufWriter& w, const std::string& dir, int64_t vocab_size, const std::string& pre = "");

}  // namespace dsv3
