// GPT-2's reversible byte <-> printable-character map used by byte-level BPE (the ByteLevel
// pre-tokenizer and decoder of Hugging Face `tokenizers`, openai/gpt-2 encoder.py
// bytes_to_unicode).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsv3::byte_level {

// The character (as UTF-8) that stands for byte `b` in vocabulary strings.
const std::string& char_for_byte(uint8_t b);

// Inverse map for a whole vocabulary string: the raw bytes it stands for, or nullopt if some
// character of `token` is not one of the 256 byte characters (e.g. an added token like
// "<｜User｜>", which the decoder then copies as its own UTF-8 text).
std::optional<std::string> token_to_bytes(std::string_view token);

}  // namespace dsv3::byte_level
