// UTF-8 decoding with the "maximal subpart" replacement policy shared by Rust, ICU and WHATWG.
#include "tokenizer/utf8.h"

namespace dsv3::utf8 {
namespace {

// Outcome of reading one sequence at s[i]: `len` bytes consumed; `valid` when they form a
// character; otherwise `truncated` says the bytes are a valid start cut off by the end of s.
struct Seq {
  size_t len;
  bool valid;
  bool truncated;
};

Seq read_seq(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {1, true, false};
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Table 3-7 of Unicode)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {1, false, false};
  }
  size_t k = 1;
  for (; k <= need; ++k) {
    if (i + k >= s.size()) return {k, false, true};
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {k, false, false};
  }
  return {need + 1, true, false};
}

}  // namespace

size_t first_invalid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII fast path: most prompt text is ASCII.
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const Seq q = read_seq(s, i);
    if (!q.valid) return i;
    i += q.len;
  }
  return s.size();
}

void append_lossy(std::string& out, std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    const Seq q = read_seq(bytes, i);
    if (q.valid) {
      out.append(bytes.data() + i, q.len);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += q.len;
  }
}

size_t stable_prefix(std::string_view bytes) {
  // A truncated start is at most 3 bytes long, so only the tail needs looking at.
  const size_t from = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t i = from; i < bytes.size(); ++i) {
    const auto b = static_cast<uint8_t>(bytes[i]);
    if (b < 0x80 || b > 0xBF) {  // a possible lead byte
      const Seq q = read_seq(bytes, i);
      if (q.truncated) return i;
    }
  }
  return bytes.size();
}

char32_t next(std::string_view s, size_t& i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t c = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  i += n;
  return c;
}

char32_t prev(std::string_view s, size_t& end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  size_t i = start;
  const char32_t c = next(s, i);
  end = start;
  return c;
}

bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

}  // namespace dsv3::utf8
