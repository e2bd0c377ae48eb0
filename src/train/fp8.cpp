#include "train/fp8.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"

namespace dsv3::train {

namespace {
// Scale of a group with max-abs `amax`: amax maps to the largest e4m3 value. All-zero groups
// get scale 1 (every code is then 0).
inline float scale_of(float amax) { return amax > 0 ? amax / kFp8E4M3Max : 1.0f; }
inline float fake(float x, float scale) { return fp8e4m3_to_f32(f32_to_fp8e4m3(x / scale)) * scale; }
}  // namespace

void fp8_fake_quant_rows(const float* x, int64_t rows, int64_t cols, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0; c0 < cols; c0 += kFp8Tile) {
      const int64_t c1 = std::min(cols, c0 + kFp8Tile);
      float amax = 0;
      for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(x[r * cols + c]));
      const float s = scale_of(amax);
      for (int64_t c = c0; c < c1; ++c) out[r * cols + c] = fake(x[r * cols + c], s);
    }
}

void fp8_fake_quant_cols(const float* x, int64_t rows, int64_t cols, float* out) {
  std::vector<float> amax(static_cast<size_t>(cols));
  for (int64_t r0 = 0; r0 < rows; r0 += kFp8Tile) {
    const int64_t r1 = std::min(rows, r0 + kFp8Tile);
    std::fill(amax.begin(), amax.end(), 0.0f);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) amax[size_t(c)] = std::max(amax[size_t(c)], std::fabs(x[r * cols + c]));
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = fake(x[r * cols + c], scale_of(amax[size_t(c)]));
  }
}

void fp8_quant_blocks(const float* w, int64_t rows, int64_t cols, float* out, uint8_t* codes, float* scale_inv) {
  const int64_t bc = (cols + kFp8Tile - 1) / kFp8Tile;
  for (int64_t r0 = 0; r0 < rows; r0 += kFp8Tile)
    for (int64_t c0 = 0; c0 < cols; c0 += kFp8Tile) {
      const int64_t r1 = std::min(rows, r0 + kFp8Tile), c1 = std::min(cols, c0 + kFp8Tile);
      float amax = 0;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(w[r * cols + c]));
      const float s = scale_of(amax);
      if (scale_inv) scale_inv[(r0 / kFp8Tile) * bc + c0 / kFp8Tile] = s;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          const uint8_t q = f32_to_fp8e4m3(w[r * cols + c] / s);
          if (codes) codes[r * cols + c] = q;
          if (out) out[r * cols + c] = fp8e4m3_to_f32(q) * s;
        }
    }
}

}  // namespace dsv3::train
