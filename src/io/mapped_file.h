// A whole file in memory, read-only. By default a memory mapping: pages are loaded by the OS
// on first touch, so opening a checkpoint costs no memory until tensors are read. Optionally
// read into anonymous memory backed by transparent huge pages (fewer TLB misses when decode
// streams through gigabytes of weights), and/or locked in RAM.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace dsv3 {

struct LoadOptions {
  bool mmap = true;    // false: read into huge-page-backed anonymous memory (--no-mmap)
  bool mlock = false;  // lock the pages in RAM (--mlock)
  // Mapping only: drop the file's pages from the page cache first (--recache). Pages cached
  // in small folios (as a writer left them) are mapped with 4 KiB TLB entries; read back
  // through this mapping (MADV_HUGEPAGE), readahead caches them in 2 MiB folios where the
  // filesystem supports large folios. Pages other processes have mapped stay.
  bool recache = false;
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

// What of the memory ranges `ranges` this process holds in RAM now, from /proc/self/smaps, each
// mapping that overlaps a range counted once and at most by its overlap:
struct Residency {
  // Rss: pages mapped into this process. For a file mapping, the pages this process has read
  // (and those the kernel's fault-around mapped beside them, up to 64 KiB per fault), not what
  // other processes brought into the shared page cache: under mpirun, what this rank touched.
  size_t resident = 0;
  // Of those, bytes mapped with huge (PMD-sized, 2 MiB on x86-64) pages: FilePmdMapped +
  // AnonHugePages + ShmemPmdMapped.
  size_t huge = 0;
};
// nullopt where smaps cannot be read (not Linux). Approximate only where the kernel merged one of
// the ranges with an unrelated neighbouring mapping of the same kind; costs a read of smaps
// (milliseconds).
std::optional<Residency> residency(std::span<const std::span<const uint8_t>> ranges);

// Maps the pages of `range` (part of a file mapping or of anonymous memory) now, as
// MappedFile::populate does for a whole file: bench's warm-up of this rank's share of the weights.
void populate_range(std::span<const uint8_t> range);

}  // namespace dsv3
