// DeepSeek-V3's tokenizer: byte-level BPE read from the model's own tokenizer.json, matching the
// Hugging Face `tokenizers` crate (added tokens, Split pre-tokenizers, merges, ByteLevel decoder).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

// A byte-level BPE vocabulary given as lists, as GGUF files carry it (tokenizer.ggml.*, model
// "gpt2"): what Tokenizer::from_vocab builds a tokenizer from.
struct TokenizerVocab {
  std::vector<std::string> tokens;  // id -> byte-level string ("Ġworld")
  // id -> llama.cpp token type: 1 normal, 2 unknown, 3 control (special added token), 4 user
  // defined (added token), 5 unused (no such id in the HF tokenizer), 6 byte. Empty: all normal.
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;  // "a b", highest priority first
  std::string pre;                  // pre-tokenizer name: "deepseek-v3" or "deepseek-llm"
  std::optional<int32_t> bos, eos;
  bool add_bos = false, add_eos = false;
};

class Tokenizer {
 public:
  // Loads tokenizer.json and, if a path is given, tokenizer_config.json (for BOS/EOS and
  // add_bos_token). Throws dsv3::Error naming the file when one is missing, is not JSON, or
  // uses a component this engine does not implement.
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json,
                             const std::filesystem::path& tokenizer_config_json = {});
  // Loads dir/tokenizer.json and dir/tokenizer_config.json (the latter only if it exists).
  static Tokenizer from_dir(const std::filesystem::path& dir);
  // Builds the tokenizer a GGUF file describes; the pre-tokenizer name stands for the Split
  // regexes of that model's tokenizer.json (llama.cpp llama-vocab.cpp). `what` names the source
  // in errors. Throws dsv3::Error for unknown pre-tokenizers, malformed merges or bad ids.
  static Tokenizer from_vocab(const TokenizerVocab& v, const std::string& what);

  // Token ids of `text` with add_special_tokens=false: added and special tokens written in the
  // text are still recognised. Throws dsv3::Error if `text` is not valid UTF-8 (see
  // utf8::append_lossy to repair such input first). Thread-safe.
  std::vector<int32_t> encode(std::string_view text) const;
  // As above; with `add_special`, BOS/EOS are added as tokenizer_config.json's add_bos_token
  // and add_eos_token say (what transformers does for add_special_tokens=true).
  std::vector<int32_t> encode(std::string_view text, bool add_special) const;

  // Text of `ids`, as tokenizers' decode: ids outside the vocabulary are dropped, special tokens
  // are dropped when `skip_special`, invalid UTF-8 becomes U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // One past the largest id (model vocabulary and added tokens); 128815 for DeepSeek-V3,
  // less than the model's 129280 embedding rows.
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The vocabulary string of `id` (byte-level form, e.g. "Ġworld"), nullopt if unknown.
  std::optional<std::string> id_to_token(int32_t id) const;
  // The bytes `id` decodes to (may be a partial UTF-8 character); empty if unknown.
  std::string_view token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  // An added token (tokenizer.json's added_tokens, special or not: chat and tool-call markers).
  bool is_added(int32_t id) const;

  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool add_bos_token() const;
  bool add_eos_token() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  // Immutable after loading, so copies share it.
  std::shared_ptr<const Impl> impl_;
};

}  // namespace dsv3
