#include "engine/gguf_tokenizer.h"

#include <algorithm>
#include <string_view>

#include "core/error.h"

namespace dsv3 {

namespace {

// llama.cpp's converter writes every added token that looks like "<｜...｜>" as control (type 3),
// but DeepSeek's tokenizer.json has these chat, FIM and tool markers as added tokens that are
// not special: they stay in decoded text, where tool calls are parsed from. They get their
// Hugging Face meaning back (user defined, type 4).
constexpr std::string_view kNotSpecial[] = {
    "<｜fim▁hole｜>",           "<｜fim▁begin｜>",          "<｜fim▁end｜>",          "<｜User｜>",
    "<｜Assistant｜>",          "<｜tool▁calls▁begin｜>",   "<｜tool▁calls▁end｜>",   "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",      "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",    "<｜tool▁sep｜>",
};
constexpr int32_t kControl = 3, kUserDefined = 4;

}  // namespace

Tokenizer tokenizer_from_gguf(const GgufMetadata& md) {
  const std::string model = md.string("tokenizer.ggml.model");
  DSV3_CHECK(model == "gpt2", md.what(), ": tokenizer.ggml.model '", model,
             "' is not supported (gpt2: byte-level BPE, as DeepSeek's tokenizers)");
  TokenizerVocab v;
  v.tokens = md.strings("tokenizer.ggml.tokens");
  if (md.has("tokenizer.ggml.token_type"))
    for (const int64_t t : md.integers("tokenizer.ggml.token_type")) v.token_types.push_back(int32_t(t));
  for (size_t id = 0; id < v.token_types.size() && id < v.tokens.size(); ++id)
    if (v.token_types[id] == kControl &&
        std::find(std::begin(kNotSpecial), std::end(kNotSpecial), v.tokens[id]) != std::end(kNotSpecial))
      v.token_types[id] = kUserDefined;
  v.merges = md.strings("tokenizer.ggml.merges");
  v.pre = md.string("tokenizer.ggml.pre", "default");
  if (md.has("tokenizer.ggml.bos_token_id")) v.bos = int32_t(md.integer("tokenizer.ggml.bos_token_id"));
  if (md.has("tokenizer.ggml.eos_token_id")) v.eos = int32_t(md.integer("tokenizer.ggml.eos_token_id"));
  // llama.cpp's default for BPE vocabularies when the key is absent: add the BOS.
  v.add_bos = md.boolean("tokenizer.ggml.add_bos_token", true);
  v.add_eos = md.boolean("tokenizer.ggml.add_eos_token", false);
  return Tokenizer::from_vocab(v, md.what());
}

ChatTemplate chat_template_from_gguf(const GgufMetadata& md) {
  DSV3_CHECK(md.has("tokenizer.chat_template"), md.what(),
             ": no tokenizer.chat_template in the metadata (needed for chat; --raw skips it)");
  const std::string jinja = md.string("tokenizer.chat_template");
  std::string bos;
  if (md.has("tokenizer.ggml.bos_token_id")) {
    const int64_t id = md.integer("tokenizer.ggml.bos_token_id");
    const auto tokens = md.strings("tokenizer.ggml.tokens");
    DSV3_CHECK(id >= 0 && id < int64_t(tokens.size()), md.what(), ": tokenizer.ggml.bos_token_id ", id,
               " is not a token");
    bos = tokens[size_t(id)];
  }
  try {
    return ChatTemplate::from_template(jinja, bos);
  } catch (const Error& e) {
    fail(md.what(), ": tokenizer.chat_template: ", e.what());
  }
}

}  // namespace dsv3
