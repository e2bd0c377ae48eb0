#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"

namespace dsv3 {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;

// Reads the whole file into anonymous memory aligned to 2 MiB and advised for transparent huge
// pages, then makes it read-only.
const uint8_t* read_into_huge_pages(int fd, size_t size, size_t& alloc, const std::string& path,
                                    const LoadOptions& opt) {
  alloc = (size + kHugePage - 1) / kHugePage * kHugePage;
  // Over-allocate by one huge page so the start can be aligned to 2 MiB.
  void* raw = ::mmap(nullptr, alloc + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  DSV3_CHECK(raw != MAP_FAILED, path, ": cannot allocate ", size, " bytes: ", std::strerror(errno));
  uint8_t* base = static_cast<uint8_t*>(raw);
  uint8_t* aligned = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(base) + kHugePage - 1) & ~(kHugePage - 1));
  if (aligned > base) ::munmap(base, size_t(aligned - base));
  const size_t tail = size_t(base + alloc + kHugePage - (aligned + alloc));
  if (tail) ::munmap(aligned + alloc, tail);
  ::madvise(aligned, alloc, MADV_HUGEPAGE);  // a hint: ignored where THP is off
  size_t done = 0;
  while (done < size) {
    const ssize_t r = ::pread(fd, aligned + done, std::min<size_t>(size - done, size_t(64) << 20), off_t(done));
    if (r <= 0) {
      const int err = r < 0 ? errno : EIO;
      ::munmap(aligned, alloc);
      fail(path, ": read failed at byte ", done, " of ", size, ": ", std::strerror(err));
    }
    done += size_t(r);
    if (opt.on_read) opt.on_read(opt.on_read_ctx, size_t(r));
  }
  ::mprotect(aligned, alloc, PROT_READ);
  return aligned;
}
}  // namespace

MappedFile::MappedFile(const std::string& path, const LoadOptions& opt) : path_(path), mapped_file_(opt.mmap) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  DSV3_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    if (opt.mmap) {
      if (opt.recache) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // advice: cannot fail harmfully
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      const int err = errno;
      ::close(fd);
      DSV3_CHECK(p != MAP_FAILED, path, ": cannot mmap: ", std::strerror(err));
      data_ = static_cast<const uint8_t*>(p);
      alloc_size_ = size_;
      ::madvise(p, size_, MADV_HUGEPAGE);  // honoured for file pages only where the kernel supports it
    } else {
      try {
        data_ = read_into_huge_pages(fd, size_, alloc_size_, path, opt);
      } catch (...) {
        ::close(fd);
        throw;
      }
      ::close(fd);
    }
    if (opt.mlock && ::mlock(data_, size_) != 0) {
      const int err = errno;
      reset();
      fail(path, ": cannot lock ", size_, " bytes in RAM (--mlock): ", std::strerror(err),
           err == ENOMEM || err == EPERM ? " (raise `ulimit -l` or run without --mlock)" : "");
    }
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() { reset(); }

void MappedFile::populate() const {
  if (mapped_file_) populate_range(bytes());
}

void populate_range(std::span<const uint8_t> range) {
  if (range.empty()) return;
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(range.data()) & ~(page - 1),
                  end = reinterpret_cast<uintptr_t>(range.data() + range.size());
#ifdef MADV_POPULATE_READ
  if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) == 0) return;
#endif
  // Older kernels (before 5.14): fault each page in by reading one byte of it.
  uint8_t sum = 0;
  for (uintptr_t at = begin; at < end; at += page) sum ^= *reinterpret_cast<const volatile uint8_t*>(at);
  __asm__ volatile("" : : "r"(sum));  // keep the reads
}

void MappedFile::reset() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), alloc_size_);
  data_ = nullptr;
  size_ = 0;
  alloc_size_ = 0;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(o.data_), size_(o.size_), alloc_size_(o.alloc_size_),
      mapped_file_(o.mapped_file_) {
  o.data_ = nullptr;
  o.size_ = 0;
  o.alloc_size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    reset();
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    alloc_size_ = o.alloc_size_;
    mapped_file_ = o.mapped_file_;
    o.data_ = nullptr;
    o.size_ = 0;
    o.alloc_size_ = 0;
  }
  return *this;
}

std::optional<Residency> residency(std::span<const std::span<const uint8_t>> ranges) {
  std::ifstream f("/proc/self/smaps");
  if (!f) return std::nullopt;
  Residency total;
  size_t rss = 0, huge = 0, overlap = 0;
  auto finish = [&] {
    total.resident += std::min(rss, overlap);
    total.huge += std::min(huge, overlap);
  };
  std::string line;
  while (std::getline(f, line)) {
    // A mapping's header: "start-end perms offset dev inode [path]" (hex addresses); its
    // fields follow as "Name:   value kB".
    uintptr_t start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " ", &start, &end) == 2) {
      finish();
      rss = huge = overlap = 0;
      for (const auto& r : ranges) {
        const uintptr_t a = std::max(start, reinterpret_cast<uintptr_t>(r.data())),
                        b = std::min(end, reinterpret_cast<uintptr_t>(r.data() + r.size()));
        if (a < b) overlap += b - a;
      }
      continue;
    }
    if (overlap == 0) continue;
    size_t kb = 0;
    if (line.rfind("Rss:", 0) == 0 && std::sscanf(line.c_str() + 4, "%zu", &kb) == 1) rss += kb * 1024;
    for (const char* key : {"AnonHugePages:", "FilePmdMapped:", "ShmemPmdMapped:"})
      if (line.rfind(key, 0) == 0 && std::sscanf(line.c_str() + std::strlen(key), "%zu", &kb) == 1) huge += kb * 1024;
  }
  finish();
  return total;
}

size_t current_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages_total = 0, pages_resident = 0;
  f >> pages_total >> pages_resident;
  return pages_resident * size_t(::sysconf(_SC_PAGESIZE));
}

}  // namespace dsv3
