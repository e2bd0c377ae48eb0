// The safetensors format: an 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets}, then the tensor bytes. Every tensor is returned as a
// zero-copy view into the mapped file; the header is validated so no view can reach outside it.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace dsv3 {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the start of the data section
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // in header order
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length
};

// Parses and validates the header of a safetensors file held in `bytes` (the whole file).
// `what` names the file in error messages. Checks: header length within the file, valid JSON
// object, known dtypes, shape x dtype size == byte range, ranges inside the data section and
// not overlapping. Throws dsv3::Error with one line naming the file and tensor.
SafetensorsHeader parse_safetensors_header(std::span<const uint8_t> bytes, const std::string& what);

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path, const LoadOptions& opt = {});
  bool is_mapped() const { return file_.is_mapped(); }
  void populate() const { file_.populate(); }  // MappedFile::populate
  std::span<const uint8_t> bytes() const { return file_.bytes(); }  // the whole file in memory

  const std::string& path() const { return file_.path(); }
  const std::vector<SafetensorsEntry>& entries() const { return header_.tensors; }
  const SafetensorsHeader& header() const { return header_; }
  TensorView view(const SafetensorsEntry& e) const;

 private:
  MappedFile file_;
  SafetensorsHeader header_;
};

}  // namespace dsv3
