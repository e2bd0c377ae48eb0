// Reading back the bytes of a written GGUF file in tests, independently of the project's reader:
// a little-endian cursor and the key/value section as (key, raw value bytes) pairs.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace dsv3::testing {

// A little-endian cursor over a GGUF file's bytes, for reading back what was written.
struct Cursor {
  const std::string& b;
  size_t p = 0;
  template <typename T>
  T get() {
    T v;
    EXPECT_LE(p + sizeof(T), b.size());
    std::memcpy(&v, b.data() + p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  std::string str() {
    const uint64_t n = get<uint64_t>();
    std::string s = b.substr(p, n);
    p += n;
    return s;
  }
  // Skips one metadata value of type t.
  void skip(uint32_t t) {
    static const size_t kSize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8) {
      str();
    } else if (t == 9) {
      const uint32_t et = get<uint32_t>();
      const uint64_t n = get<uint64_t>();
      for (uint64_t i = 0; i < n; ++i) skip(et);
    } else {
      p += kSize[t];
    }
  }
};

// The key/value section of a GGUF file: (key, bytes of type + value) in file order.
inline std::vector<std::pair<std::string, std::string>> kv_section(const std::string& b) {
  Cursor c{b};
  EXPECT_EQ(b.substr(0, 4), "GGUF");
  c.p = 4;
  EXPECT_EQ(c.get<uint32_t>(), 3u);
  c.get<uint64_t>();
  const uint64_t n_kv = c.get<uint64_t>();
  std::vector<std::pair<std::string, std::string>> out;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str();
    const size_t start = c.p;
    c.skip(c.get<uint32_t>());
    out.emplace_back(std::move(key), b.substr(start, c.p - start));
  }
  return out;
}

// The tensor descriptions of a GGUF file, in file order, with each tensor's absolute offset in
// the file (the data section starts at the header's end rounded up to 32 bytes).
struct ReadBackTensor {
  std::string name;
  uint32_t ggml_type = 0;
  std::vector<int64_t> ne;
  uint64_t file_offset = 0;
};
inline std::vector<ReadBackTensor> tensor_section(const std::string& b) {
  Cursor c{b};
  c.p = 8;
  const uint64_t n_tensors = c.get<uint64_t>(), n_kv = c.get<uint64_t>();
  for (uint64_t i = 0; i < n_kv; ++i) {
    c.str();
    c.skip(c.get<uint32_t>());
  }
  std::vector<ReadBackTensor> out(n_tensors);
  for (ReadBackTensor& t : out) {
    t.name = c.str();
    t.ne.resize(c.get<uint32_t>());
    for (int64_t& d : t.ne) d = int64_t(c.get<uint64_t>());
    t.ggml_type = c.get<uint32_t>();
    t.file_offset = c.get<uint64_t>();
  }
  const uint64_t data = (c.p + 31) / 32 * 32;
  for (ReadBackTensor& t : out) t.file_offset += data;
  return out;
}

}  // namespace dsv3::testing
