#include "kernels/scalar/scalar.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/ggml_blocks.h"
#include "kernels/variant.h"

namespace dsv3::kernels::scalar {

namespace {
// Loads through memcpy: mapped tensors carry no alignment guarantee the compiler may assume.
template <typename T>
inline T load(const void* base, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const uint8_t*>(base) + size_t(i) * sizeof(T), sizeof(T));
  return v;
}
}  // namespace

namespace {
// dequant_row_range for a ggml block format: whole blocks straight into out, a partial one at
// either end through a block-sized buffer.
void dequant_blocks_range(const Matrix& w, int64_t r, int64_t c0, int64_t n, float* out) {
  const int64_t be = dtype_block_elems(w.dtype);
  const size_t bb = dtype_block_bytes(w.dtype);
  const uint8_t* row = static_cast<const uint8_t*>(w.data) + size_t(r) * w.row_bytes();
  float block[ggml::kQK_K];
  for (int64_t c = c0; c < c0 + n;) {
    const int64_t b = c / be, off = c % be, take = std::min(be - off, c0 + n - c);
    if (take == be) {
      const int64_t whole = (c0 + n - c) / be;  // every whole block from here on at once
      ggml::dequantize(w.dtype, row + size_t(b) * bb, whole, out + (c - c0));
      c += whole * be;
      continue;
    }
    ggml::dequantize(w.dtype, row + size_t(b) * bb, 1, block);
    std::memcpy(out + (c - c0), block + off, size_t(take) * sizeof(float));
    c += take;
  }
}
}  // namespace

void dequant_row_range(const Matrix& w, int64_t r, int64_t c0, int64_t n, float* out) {
  if (dtype_is_block(w.dtype)) return dequant_blocks_range(w, r, c0, n, out);
  const int64_t base = r * w.cols + c0;
  switch (w.dtype) {
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) out[i] = load<float>(w.data, base + i);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load<uint16_t>(w.data, base + i));
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load<uint16_t>(w.data, base + i));
      break;
    case DType::F8_E4M3: {
      const uint8_t* p = static_cast<const uint8_t*>(w.data) + base;
      if (!w.quantized()) {
        for (int64_t i = 0; i < n; ++i) out[i] = fp8e4m3_to_f32(p[i]);
        break;
      }
      // dequantized value = fp8 value x scale of its 128x128 block (edge blocks partial)
      for (int64_t i = 0; i < n;) {
        const int64_t c = c0 + i;
        const int64_t block_end = std::min(n, i + (w.block_cols - c % w.block_cols));
        const float s = w.block_scale(r, c);
        for (; i < block_end; ++i) out[i] = fp8e4m3_to_f32(p[i]) * s;
      }
      break;
    }
    default:
      fail("kernels: unsupported weight dtype ", dtype_name(w.dtype));
  }
}

void linear_rows(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float* scratch) {
  for (int64_t r = r0; r < r1; ++r) {
    dequant_row_range(w, r, 0, w.cols, scratch);
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * w.cols;
      float acc = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) acc += scratch[c] * xt[c];
      y[t * w.rows + r] = acc;
    }
  }
}

void linear_transposed_acc(const Matrix& w, const float* x, float* y, int64_t n) {
  thread_local std::vector<float> row;
  if (row.size() < size_t(w.cols)) row.resize(size_t(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequant_row_range(w, r, 0, w.cols, row.data());
    for (int64_t t = 0; t < n; ++t) {
      const float xr = x[t * w.rows + r];
      float* yt = y + t * w.cols;
      for (int64_t c = 0; c < w.cols; ++c) yt[c] += xr * row[c];
    }
  }
}

void rmsnorm(const float* x, const Matrix& weight, float eps, float* y) {
  const int64_t dim = weight.cols;
  float ss = 0.0f;
  for (int64_t i = 0; i < dim; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / float(dim) + eps);
  // y may alias x: take x[i] before y[i] is overwritten, one element at a time.
  for (int64_t i = 0; i < dim; ++i) {
    float wi;
    dequant_row_range(weight, 0, i, 1, &wi);
    y[i] = x[i] * inv * wi;
  }
}

void rope_interleaved(float* x, const float* cos, const float* sin, int64_t dim) {
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * cos[i] - b * sin[i];
    x[2 * i + 1] = a * sin[i] + b * cos[i];
  }
}

float softmax_partial(float* x, int64_t n, float scale, float* max) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i] *= scale);
  *max = mx;
  if (mx == -std::numeric_limits<float>::infinity()) {  // nothing to attend to: all zero
    for (int64_t i = 0; i < n; ++i) x[i] = 0.0f;
    return 0.0f;
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - mx);
  return sum;
}

// softmax_partial at scale 1 (x * 1 is x), normalised.
void softmax(float* x, int64_t n) {
  float mx;
  const float sum = softmax_partial(x, n, 1.0f, &mx);
  if (sum == 0.0f) return;
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, bool b_trans,
            float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk) acc = std::fma(a[i * lda + kk], b_trans ? b[j * ldb + kk] : b[kk * ldb + j], acc);
      c[i * ldc + j] = acc;
    }
}

const Variant& variant() {
  static const Variant v{
      "scalar",
      linear_rows,
      [](const Matrix& w, const float* x, float* y, int64_t n) { linear_transposed_acc(w, x, y, n); },
      dequant_row_range,
      rmsnorm,
      rope_interleaved,
      softmax,
      softmax_partial,
      silu_mul,
      dot,
      axpy,
      matmul,
      nullptr,  // no GEMM: linear_rows is the reference for every n
  };
  return v;
}

}  // namespace dsv3::kernels::scalar
