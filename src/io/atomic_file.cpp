#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"

namespace dsv3 {

void write_all(std::FILE* f, const void* data, size_t n, const std::string& path) {
  if (n == 0) return;
  DSV3_CHECK(std::fwrite(data, 1, n, f) == n, path, ": write failed: ", std::strerror(errno));
}

void replace_folder(const std::string& staged, const std::string& target) {
  namespace fs = std::filesystem;
  if (fs::exists(target)) {
    const fs::path old = target + ".old";
    fs::remove_all(old);
    fs::rename(target, old);
    fs::rename(staged, target);
    fs::remove_all(old);
  } else {
    fs::rename(staged, target);
  }
}

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write,
                       const AtomicWriteOptions& opt) {
  std::random_device rd;
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd() & 0xffffff);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  DSV3_CHECK(f, path, ": cannot create ", tmp, ": ", std::strerror(errno));
  try {
    write(f);
    DSV3_CHECK(std::fflush(f) == 0 && ::fsync(fileno(f)) == 0, path, ": write failed: ", std::strerror(errno));
    // Advice only: some filesystems (tmpfs) keep the pages, which costs nothing but the effect.
    if (opt.drop_from_page_cache) ::posix_fadvise(fileno(f), 0, 0, POSIX_FADV_DONTNEED);
    const int rc = std::fclose(f);
    f = nullptr;
    DSV3_CHECK(rc == 0, path, ": close failed: ", std::strerror(errno));
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    DSV3_CHECK(!ec, path, ": cannot rename temporary file into place: ", ec.message());
  } catch (...) {
    if (f) std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace dsv3
