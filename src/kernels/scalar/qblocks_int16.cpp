// What the SIMD variants compute for weights in ggml block formats (simd/qblocks.h, the decode
// kernel, and simd/qgemm.h, the GEMM), written as plain loops from ggml's block layouts
// (core/ggml_blocks.h), for the tests to compare them with bit for bit. Compiled with
// -ffp-contract=off (src/kernels/CMakeLists.txt): every float operation below is one rounding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/ggml_blocks.h"
#include "kernels/block_activations.h"
#include "kernels/scalar/scalar.h"
#include "kernels/variant.h"

namespace dsv3::kernels::scalar {
namespace {

constexpr int kXBlock = 256;  // columns per activation scale

float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// One token: xi = round-to-nearest-even(x x (X / amax)) per 256 columns, dx = amax / X (X the
// format's activation_max: 16383, or 127 for the formats with 8-bit activations), and the sums of
// xi over each 16 and 32 columns as floats. Non-finite: dx NaN, xi 0.
struct Token {
  std::vector<int32_t> xi;
  std::vector<float> dx, bsum16, bsum32;
};

Token quantize(const float* x, int64_t cols, float xmax) {
  Token t;
  t.xi.assign(size_t(cols), 0);
  t.dx.assign(size_t((cols + kXBlock - 1) / kXBlock), 0.0f);
  for (int64_t s = 0; s * kXBlock < cols; ++s) {
    const int64_t c0 = s * kXBlock, c1 = std::min<int64_t>(cols, c0 + kXBlock);
    float amax = 0;
    bool finite = true;
    for (int64_t c = c0; c < c1; ++c) {
      finite = finite && std::isfinite(x[c]);
      amax = std::max(amax, std::fabs(x[c]));
    }
    if (!finite) {
      t.dx[size_t(s)] = NAN;
      continue;
    }
    t.dx[size_t(s)] = amax / xmax;
    const float inv = amax > 0 ? xmax / amax : 0.0f;
    for (int64_t c = c0; c < c1; ++c) t.xi[size_t(c)] = int32_t(std::nearbyint(x[c] * inv));
  }
  for (int64_t j = 0; j < cols / 16; ++j) {
    int32_t s = 0;
    for (int64_t c = 16 * j; c < 16 * j + 16; ++c) s += t.xi[size_t(c)];
    t.bsum16.push_back(float(s));
  }
  for (int64_t j = 0; j < cols / 32; ++j) t.bsum32.push_back(t.bsum16[size_t(2 * j)] + t.bsum16[size_t(2 * j + 1)]);
  return t;
}

// ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)): the 8-lane halving tree.
float tree8(const float* v) { return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7])); }

// Halves added pairwise, lane i + lane i + L/2, until one is left (L a power of two).
float tree(std::vector<float> v) {
  for (size_t h = v.size() / 2; h >= 1; h /= 2)
    for (size_t i = 0; i < h; ++i) v[i] = v[i] + v[i + h];
  return v[0];
}

// A block's weights as the integers the kernels multiply (the sub-block's integer scale
// applied), its d, and the minima term in units of dx (0 for formats without minima).
struct Block {
  int32_t w[256];
  float d;
  float term;
};

Block decode(DType t, const uint8_t* b, const Token& x, int64_t c0) {
  Block k{};
  auto nib = [](const uint8_t* qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; };
  switch (t) {
    case DType::Q8_0:
      k.d = half_at(b);
      for (int j = 0; j < 32; ++j) k.w[j] = int8_t(b[2 + j]);
      break;
    case DType::Q4_0:
      k.d = half_at(b);
      for (int j = 0; j < 32; ++j) k.w[j] = nib(b + 2, j) - 8;
      break;
    case DType::Q4_1:
      k.d = half_at(b);
      for (int j = 0; j < 32; ++j) k.w[j] = nib(b + 4, j);
      k.term = half_at(b + 2) * x.bsum32[size_t(c0 / 32)];
      break;
    case DType::Q5_0: {
      k.d = half_at(b);
      uint32_t qh;
      std::memcpy(&qh, b + 2, 4);
      for (int j = 0; j < 32; ++j) k.w[j] = (nib(b + 6, j) | int((qh >> j) & 1) << 4) - 16;
      break;
    }
    case DType::Q5_1: {
      k.d = half_at(b);
      uint32_t qh;
      std::memcpy(&qh, b + 4, 4);
      for (int j = 0; j < 32; ++j) k.w[j] = nib(b + 8, j) | int((qh >> j) & 1) << 4;
      k.term = half_at(b + 2) * x.bsum32[size_t(c0 / 32)];
      break;
    }
    case DType::Q2_K: {  // scales[16] @0, qs[64] @16, d @80, dmin @82
      k.d = half_at(b + 80);
      for (int h = 0; h < 2; ++h)
        for (int q = 0; q < 4; ++q)
          for (int l = 0; l < 32; ++l) {
            const int g = 4 * h + q;
            k.w[32 * g + l] = ((b[16 + 32 * h + l] >> (2 * q)) & 3) * (b[2 * g + l / 16] & 15);
          }
      float v[8];
      const float* bs = x.bsum16.data() + c0 / 16;
      for (int j = 0; j < 8; ++j) v[j] = std::fma(float(b[8 + j] >> 4), bs[8 + j], float(b[j] >> 4) * bs[j]);
      k.term = -half_at(b + 82) * tree8(v);
      break;
    }
    case DType::Q3_K: {  // hmask[32] @0, qs[64] @32, scales[12] @96, d @108
      k.d = half_at(b + 108);
      for (int h = 0; h < 2; ++h)
        for (int q = 0; q < 4; ++q)
          for (int l = 0; l < 32; ++l) {
            const int g = 4 * h + q;
            const int v = ((b[32 + 32 * h + l] >> (2 * q)) & 3) + (((b[l] >> g) & 1) ? 4 : 0);  // 0..7
            k.w[32 * g + l] = v * ggml::q3k_scale(2 * g + l / 16, b + 96);
          }
      // The -4 of every value: -d x 4 x sum_j sc[j] x (sum of sub-block j's xi), an exact integer.
      int64_t off = 0;
      for (int j = 0; j < 16; ++j) off += int64_t(ggml::q3k_scale(j, b + 96)) * int64_t(x.bsum16[size_t(c0 / 16 + j)]);
      k.term = -k.d * float(4 * off);
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {  // d @0, dmin @2, scales[12] @4, (Q5_K: qh[32] @16) qs[128] @16 or @48
      const bool q5 = t == DType::Q5_K;
      k.d = half_at(b);
      uint8_t sc[8], m[8];
      for (int j = 0; j < 8; ++j) ggml::q4k_scale_min(j, b + 4, &sc[j], &m[j]);
      const uint8_t* qs = b + (q5 ? 48 : 16);
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) {
          int lo = qs[32 * j + l] & 15, hi = qs[32 * j + l] >> 4;
          if (q5) {
            lo |= ((b[16 + l] >> (2 * j)) & 1) << 4;
            hi |= ((b[16 + l] >> (2 * j + 1)) & 1) << 4;
          }
          k.w[64 * j + l] = lo * sc[2 * j];
          k.w[64 * j + 32 + l] = hi * sc[2 * j + 1];
        }
      float v[8];
      for (int j = 0; j < 8; ++j) v[j] = float(m[j]) * x.bsum32[size_t(c0 / 32 + j)];
      k.term = -half_at(b + 2) * tree8(v);
      break;
    }
    case DType::Q6_K: {  // ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208
      k.d = half_at(b + 208);
      for (int h = 0; h < 2; ++h)
        for (int q = 0; q < 4; ++q)
          for (int l = 0; l < 32; ++l) {
            const int g = 4 * h + q;
            const uint8_t ql = b[64 * h + 32 * (q % 2) + l];
            const int lo = q < 2 ? ql & 15 : ql >> 4, hi = (b[128 + 32 * h + l] >> (2 * q)) & 3;
            k.w[32 * g + l] = ((lo | hi << 4) - 32) * int8_t(b[192 + 2 * g + l / 16]);
          }
      break;
    }
    default:
      unsupported_dtype(t);
  }
  return k;
}

}  // namespace

bool int16_activations_supported(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

void linear_rows_int16(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, int lanes) {
  const int64_t cols = w.cols, elems = dtype_block_elems(w.dtype), nblocks = cols / elems;
  const size_t block_bytes = dtype_row_bytes(w.dtype, elems);
  for (int64_t t = 0; t < n; ++t) {
    const Token xt = quantize(x + t * cols, cols, float(activation_max(w.dtype)));
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = static_cast<const uint8_t*>(w.data) + size_t(r) * w.row_bytes();
      std::vector<float> acc(size_t(lanes), 0.0f);
      float sacc = 0;
      for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t c0 = b * elems;
        const Block k = decode(w.dtype, row + size_t(b) * block_bytes, xt, c0);
        const float dx = xt.dx[size_t(c0 / kXBlock)];
        // Lane l, summed exactly over the block: int16 activations, the pairs of columns
        // (2p, 2p + 1) of each 32-column group with p % lanes == l; 8-bit activations
        // (VPMADDUBSW, then VPMADDWD), columns 4l..4l+3 of each 4 x lanes.
        std::vector<int32_t> is(size_t(lanes), 0);
        const bool i8 = int8_activations(w.dtype);
        for (int64_t c = 0; c < elems; ++c)
          is[size_t(i8 ? c % (4 * lanes) / 4 : (c % 32) / 2 % lanes)] += k.w[c] * xt.xi[size_t(c0 + c)];
        const float f = k.d * dx;
        for (int l = 0; l < lanes; ++l) acc[size_t(l)] = std::fma(float(is[size_t(l)]), f, acc[size_t(l)]);
        sacc = std::fma(k.term, dx, sacc);
      }
      y[t * w.rows + r] = tree(acc) + sacc;
    }
  }
}

}  // namespace dsv3::kernels::scalar
