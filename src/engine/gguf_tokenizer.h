// The tokenizer and chat template a GGUF file carries in its metadata (tokenizer.ggml.*,
// tokenizer.chat_template), so that a GGUF file alone is a model.
#pragma once
#include "io/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

// tokenizer.ggml.model must be "gpt2" (byte-level BPE); tokens, token_type, merges, pre,
// bos/eos_token_id and add_bos/add_eos_token as llama.cpp's converter writes them. Throws
// dsv3::Error naming the file and the key.
Tokenizer tokenizer_from_gguf(const GgufMetadata& md);
// The chat template of tokenizer.chat_template (with the BOS token's text). Throws
// dsv3::Error naming the file when it is missing or not one the engine renders.
ChatTemplate chat_template_from_gguf(const GgufMetadata& md);

}  // namespace dsv3
