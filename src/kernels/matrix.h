// The kernels' view of a weight: a [rows, cols] matrix exactly as stored in the checkpoint
// (F32, BF16, F16, FP8 e4m3 with per-block float32 scales, or a ggml block format whose rows are
// whole blocks), never expanded in memory.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace dsv3::kernels {

struct Matrix {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;  // row 0 of this view; rows are row_bytes() apart
  // FP8 only: scale_inv of the whole tensor, [ceil(R / block_rows), ceil(cols / block_cols)],
  // and the index of this view's first row within that tensor (views can be row ranges).
  const float* scale = nullptr;
  int64_t scale_cols = 0;
  int64_t row0 = 0;
  int64_t block_rows = 128, block_cols = 128;
  // BF16 and FP8 weights: multiply float32 activations even on a variant that rounds them to BF16
  // (avx512bf16). Set on a view by the code that knows an op's accuracy needs (docs/kernels.md,
  // "Where activations stay float32"); the float32 variants ignore it.
  bool f32_activations = false;

  bool quantized() const { return scale != nullptr; }
  // Bytes per row: cols elements, or cols / block values blocks of a ggml block format (cols
  // must be whole blocks: whoever builds the view checks dtype_whole_blocks).
  size_t row_bytes() const { return size_t(dtype_row_bytes(dtype, cols)); }

  // Rows [r0, r0 + n) as a matrix of their own (a view: no data is touched).
  Matrix row_slice(int64_t r0, int64_t n) const {
    Matrix m = *this;
    m.rows = n;
    m.data = static_cast<const uint8_t*>(data) + size_t(r0) * row_bytes();
    m.row0 = row0 + r0;
    return m;
  }
  // The bytes this view's rows occupy, and (FP8) the bytes of the scale rows they use.
  const uint8_t* data_begin() const { return static_cast<const uint8_t*>(data); }
  size_t data_bytes() const { return size_t(rows) * row_bytes(); }
  const uint8_t* scale_begin() const {
    return scale ? reinterpret_cast<const uint8_t*>(scale + (row0 / block_rows) * scale_cols) : nullptr;
  }
  size_t scale_bytes() const {
    if (!scale || rows == 0) return 0;
    return size_t((row0 + rows - 1) / block_rows - row0 / block_rows + 1) * size_t(scale_cols) * sizeof(float);
  }
  // Scale of element (r, c) of this view (FP8 only).
  float block_scale(int64_t r, int64_t c) const {
    float s;
    std::memcpy(&s, scale + ((row0 + r) / block_rows) * scale_cols + c / block_cols, sizeof s);
    return s;
  }
};

}  // namespace dsv3::kernels
