// Builds the byte map once: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order, exactly as bytes_to_unicode() in GPT-2's encoder.py.
#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace dsv3::byte_level {
namespace {

struct Tables {
  std::array<std::string, 256> utf8;  // byte -> UTF-8 of its character
  std::array<int16_t, 0x144> byte;    // character (< U+0144) -> byte, or -1

  Tables() {
    byte.fill(-1);
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t c = printable(b) ? b : 0x100 + n++;
      std::string s;
      if (c < 0x80) {
        s += static_cast<char>(c);
      } else {
        s += static_cast<char>(0xC0 | (c >> 6));
        s += static_cast<char>(0x80 | (c & 0x3F));
      }
      utf8[b] = s;
      byte[c] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& char_for_byte(uint8_t b) { return tables().utf8[b]; }

std::optional<std::string> token_to_bytes(std::string_view token) {
  const Tables& t = tables();
  std::string out;
  out.reserve(token.size());
  if (utf8::first_invalid(token) != token.size()) return std::nullopt;
  size_t i = 0;
  while (i < token.size()) {
    const char32_t c = utf8::next(token, i);
    if (c >= t.byte.size() || t.byte[c] < 0) return std::nullopt;
    out += static_cast<char>(t.byte[c]);
  }
  return out;
}

}  // namespace dsv3::byte_level
