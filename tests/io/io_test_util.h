// Helpers shared by the io tests: temporary folders, raw file writing, hand-made safetensors
// bytes, and expecting a dsv3::Error whose one-line message says what is wrong.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3::testing {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "io") {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            ("dsv3-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A safetensors file: 8-byte little-endian length, `header_text`, then `data_bytes` bytes
// (a counting pattern). `header_len` overrides the length field (for lying headers).
inline std::string safetensors_bytes(const std::string& header_text, size_t data_bytes,
                                     std::optional<uint64_t> header_len = std::nullopt) {
  const uint64_t n = header_len.value_or(header_text.size());
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(n >> (8 * i)));
  out += header_text;
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(char(i & 0xff));
  return out;
}

inline nlohmann::json tensor_json(const std::string& dtype, std::vector<int64_t> shape, uint64_t begin,
                                  uint64_t end) {
  return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
}

// Runs f, which must throw dsv3::Error; returns its message (empty, with a test failure, if it
// did not throw). Any other exception escapes and fails the test as "unexpected exception".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const dsv3::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a dsv3::Error, nothing was thrown";
  return {};
}

// The message is one line and contains every one of `parts`.
inline ::testing::AssertionResult says(const std::string& msg, std::initializer_list<std::string> parts) {
  if (msg.find('\n') != std::string::npos) return ::testing::AssertionFailure() << "multi-line message: " << msg;
  for (const auto& p : parts)
    if (msg.find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks \"" << p << "\": " << msg;
  return ::testing::AssertionSuccess();
}

}  // namespace dsv3::testing
