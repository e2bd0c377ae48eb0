#include "io/safetensors_writer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.h"
#include "io/atomic_file.h"

namespace dsv3 {

void SafetensorsWriter::add(std::string name, DType dtype, Shape shape) {
  entries_.push_back({std::move(name), dtype, shape});
}

uint64_t SafetensorsWriter::data_bytes() const {
  uint64_t n = 0;
  for (const auto& e : entries_) n += uint64_t(e.shape.numel()) * dtype_size(e.dtype);
  return n;
}

void SafetensorsWriter::write(const std::string& path,
                              const std::function<void(size_t, std::span<uint8_t>)>& fill,
                              const std::map<std::string, std::string>& metadata) const {
  write_impl(path, [&](size_t i, uint64_t, std::span<uint8_t> dst) { fill(i, dst); }, metadata, 0);
}

void SafetensorsWriter::write_chunked(const std::string& path,
                                      const std::function<void(size_t, uint64_t, std::span<uint8_t>)>& fill,
                                      const std::map<std::string, std::string>& metadata,
                                      uint64_t chunk_bytes) const {
  DSV3_CHECK(chunk_bytes > 0 && chunk_bytes % 8 == 0, path, ": chunk size ", chunk_bytes,
             " is not a positive multiple of 8 bytes");
  write_impl(path, fill, metadata, chunk_bytes);
}

void SafetensorsWriter::write_impl(const std::string& path,
                                   const std::function<void(size_t, uint64_t, std::span<uint8_t>)>& fill,
                                   const std::map<std::string, std::string>& metadata, uint64_t chunk_bytes) const {
  std::vector<size_t> order(entries_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(entries_[a].dtype) > dtype_size(entries_[b].dtype);
  });

  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  size_t largest = 0;
  for (size_t i : order) {
    const auto& e = entries_[i];
    const uint64_t n = uint64_t(e.shape.numel()) * dtype_size(e.dtype);
    std::vector<int64_t> shape(e.shape.dims.begin(), e.shape.dims.begin() + e.shape.rank);
    header[e.name] = {{"dtype", std::string(dtype_name(e.dtype))}, {"shape", shape},
                      {"data_offsets", {offset, offset + n}}};
    offset += n;
    largest = std::max<size_t>(largest, n);
  }
  std::string text = header.dump();
  while (text.size() % 8) text.push_back(' ');  // keeps the data section 8-byte aligned

  write_file_atomic(path, [&](std::FILE* f) {
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
    write_all(f, len, 8, path);
    write_all(f, text.data(), text.size(), path);
    // chunk_bytes 0: whole tensors.
    std::vector<uint8_t> buf(chunk_bytes == 0 ? largest : size_t(std::min<uint64_t>(largest, chunk_bytes)));
    for (size_t i : order) {
      const auto& e = entries_[i];
      const uint64_t bytes = uint64_t(e.shape.numel()) * dtype_size(e.dtype);
      uint64_t at = 0;
      do {  // an empty tensor gets one empty fill
        std::span<uint8_t> dst(buf.data(), size_t(std::min<uint64_t>(buf.size(), bytes - at)));
        fill(i, at, dst);
        write_all(f, dst.data(), dst.size(), path);
        at += dst.size();
      } while (at < bytes);
    }
  }, AtomicWriteOptions{.drop_from_page_cache = true});
}

}  // namespace dsv3
