// A read-only memory mapping of a whole file. Pages are loaded by the OS on first touch,
// so opening a checkpoint costs no memory until tensors are read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace dsv3 {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws dsv3::Error naming the path if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void reset();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Resident set size of this process in bytes (Linux /proc/self/statm), for memory tests and logs.
size_t current_rss_bytes();

}  // namespace dsv3
