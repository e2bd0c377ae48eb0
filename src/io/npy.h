// NumPy .npy files (format 1.0), float32 little-endian, C order; written atomically.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dsv3 {

void write_npy_f32(const std::string& path, std::span<const float> data, const std::vector<int64_t>& shape);

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};
// Reads a float32 C-order .npy (used by tests and tools). Throws dsv3::Error otherwise.
NpyArray read_npy_f32(const std::string& path);

}  // namespace dsv3
