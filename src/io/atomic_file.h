// Writing files so that a crash or an error never leaves a half-written file behind: data goes
// to a temporary file next to the target, which is fsync'ed and renamed over it at the end.
#pragma once
#include <cstdio>
#include <functional>
#include <string>

namespace dsv3 {

// Calls write(FILE*) on a temporary file in the target's folder, then renames it to `path`.
// On any exception the temporary file is removed and `path` is untouched.
struct AtomicWriteOptions {
  // Drop the written (flushed, so clean) pages from the page cache: for files that are read
  // through memory mappings (safetensors), see SafetensorsWriter::write.
  bool drop_from_page_cache = false;
};
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& write,
                       const AtomicWriteOptions& opt = {});

// Moves the finished folder `staged` to `target`: an existing `target` is first moved aside to
// `target.old`, then removed, so `target` is at every moment either the old or the new folder.
void replace_folder(const std::string& staged, const std::string& target);

// fwrite that throws dsv3::Error naming `path` on a short write (disk full, ...).
void write_all(std::FILE* f, const void* data, size_t n, const std::string& path);

}  // namespace dsv3
