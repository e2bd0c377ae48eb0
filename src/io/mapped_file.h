// A whole file in memory, read-only. By default a memory mapping: pages are loaded by the OS
// on first touch, so opening a checkpoint costs no memory until tensors are read. Optionally
// read into anonymous memory backed by transparent huge pages (fewer TLB misses when decode
// streams through gigabytes of weights), and/or locked in RAM.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace dsv3 {

struct LoadOptions {
  bool mmap = true;    // false: read into huge-page-backed anonymous memory (--no-mmap)
  bool mlock = false;  // lock the pages in RAM (--mlock)
  // Called with bytes read so far when reading (not mapping); for progress bars.
  void (*on_read)(void* ctx, size_t bytes) = nullptr;
  void* on_read_ctx = nullptr;
};

class MappedFile {
 public:
  MappedFile() = default;
  // Throws dsv3::Error naming the path if it cannot be opened, mapped, read or locked.
  explicit MappedFile(const std::string& path, const LoadOptions& opt = {});
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }
  bool is_mapped() const { return mapped_file_; }
  // Maps every page of a file mapping now (MADV_POPULATE_READ; where the kernel lacks it, one
  // read per page) instead of on first touch, so that later reads take no page faults. Reads
  // the file from disk where it is not cached. A no-op for anonymous copies (--no-mmap).
  void populate() const;

 private:
  void reset();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t alloc_size_ = 0;      // bytes of the mapping (anonymous ones are rounded up)
  bool mapped_file_ = true;    // false: anonymous memory holding a copy of the file
};

// Resident set size of this process in bytes (Linux /proc/self/statm): memory tests, and
// bench's resident-memory figure (sampled per phase).
size_t current_rss_bytes();

}  // namespace dsv3
