// Non-owning views of tensors: a dtype, a shape in PyTorch order, and a pointer into
// memory owned elsewhere (usually a memory-mapped checkpoint file).
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace dsv3 {

struct Shape {
  static constexpr int kMaxDims = 4;
  std::array<int64_t, kMaxDims> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d) {
    DSV3_ASSERT(d.size() <= kMaxDims);
    for (int64_t v : d) dims[rank++] = v;
  }
  int64_t operator[](int i) const { return dims[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (dims[i] != o.dims[i]) return false;
    return true;
  }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  }
};

struct TensorView {
  DType dtype = DType::F32;
  Shape shape;
  const void* data = nullptr;

  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return size_t(dtype_row_bytes(dtype, numel())); }  // whole blocks for block formats
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
};

}  // namespace dsv3
