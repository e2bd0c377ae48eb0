// UTF-8 helpers for the tokenizer: validation, lossy decoding as Rust's String::from_utf8_lossy
// does it (one U+FFFD per maximal invalid subpart), and the split point a streaming decoder needs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3::utf8 {

// Byte offset of the first invalid or truncated sequence in `s`, or s.size() if `s` is valid.
size_t first_invalid(std::string_view s);

// Appends `bytes` to `out`, replacing each maximal invalid subpart (Unicode 15, section 3.9,
// "U+FFFD Substitution of Maximal Subparts") with U+FFFD. A trailing truncated sequence
// becomes one U+FFFD.
void append_lossy(std::string& out, std::string_view bytes);

// Length of the longest prefix of `bytes` whose lossy decoding cannot change whatever bytes
// follow: everything except a trailing sequence that is a valid but incomplete character start.
size_t stable_prefix(std::string_view bytes);

// Decodes the code point starting at s[i] (s must be valid UTF-8); advances i past it.
char32_t next(std::string_view s, size_t& i);

// Decodes the code point ending just before s[end] (s valid UTF-8); moves end to its first byte.
char32_t prev(std::string_view s, size_t& end);

// Unicode White_Space property (stable since Unicode 6.3); Rust's char::is_whitespace.
bool is_whitespace(char32_t c);

}  // namespace dsv3::utf8
