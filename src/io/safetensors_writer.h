// Streaming safetensors writer: tensors are declared first (name, dtype, shape), then their
// bytes are produced one tensor at a time, so writing a file never needs it all in memory.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dsv3 {

class SafetensorsWriter {
 public:
  void add(std::string name, DType dtype, Shape shape);
  size_t size() const { return entries_.size(); }
  uint64_t data_bytes() const;
  const std::string& name(size_t i) const { return entries_[i].name; }

  // Writes the file atomically. fill(i, dst) must fill dst (exactly the bytes of tensor i, as
  // declared by the i-th add()). Tensors are laid out widest dtype first so every tensor is
  // aligned to its element size, as the safetensors library does.
  // The written pages are then dropped from the page cache: written, they sit there in folios
  // as small as the writes made them, and a memory mapping maps small folios with 4 KiB TLB
  // entries; read back through dsv3's mapping (MADV_HUGEPAGE), the kernel's readahead caches
  // them in 2 MiB folios where the filesystem supports large folios (ext4 and XFS on recent
  // kernels). `medium` FP8 decode, 2 threads: 44-68% of the weights in huge pages as written,
  // 65-73 tok/s; 100% after the drop, 83-84 (48 GB/s of read bandwidth).
  void write(const std::string& path, const std::function<void(size_t i, std::span<uint8_t> dst)>& fill,
             const std::map<std::string, std::string>& metadata = {{"format", "pt"}}) const;

  // Largest chunk write_chunked asks for: memory stays bounded whatever the tensors' sizes
  // (DeepSeek-V3's embedding alone is 1.85 GB).
  static constexpr uint64_t kChunkBytes = uint64_t(64) << 20;
  // As write, but fill(i, offset, dst) fills bytes [offset, offset + dst.size()) of tensor i;
  // each tensor's chunks come in order, chunk_bytes each (a positive multiple of 8) but a
  // tensor's last, so every chunk holds whole elements.
  void write_chunked(const std::string& path,
                     const std::function<void(size_t i, uint64_t offset, std::span<uint8_t> dst)>& fill,
                     const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                     uint64_t chunk_bytes = kChunkBytes) const;

 private:
  void write_impl(const std::string& path,
                  const std::function<void(size_t i, uint64_t offset, std::span<uint8_t> dst)>& fill,
                  const std::map<std::string, std::string>& metadata, uint64_t chunk_bytes) const;
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
  };
  std::vector<Entry> entries_;
};

}  // namespace dsv3
