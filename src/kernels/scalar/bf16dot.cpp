// The scalar twin of the avx512bf16 variant's products (avx512/bf16dot.cpp): BF16 and FP8
// weights times activations rounded to BF16, summed as AVX-512 BF16's dot-product instruction
// (VDPBF16PS) sums them. Written as plain loops so that the vector code has a reference to
// match bit for bit (tests/kernels/variants_test.cpp), and so that what the fast path computes
// is written down in one readable place.
//
// The numerics, per (row, token):
//   x'[c] = bf16(x[c] * f[c]): f is the weight's FP8 block scale (1 for BF16 and for unscaled
//           FP8), the product rounded to float32, then to BF16 by round-to-nearest-even with
//           float32 subnormals read as zero (VCVTNE2PS2BF16);
//   w[c]  = the weight as BF16: BF16 as stored, an FP8 code's exact value (every e4m3 value,
//           subnormals included, is a normal BF16);
//   lane l (of 16) accumulates, for every 32-column vector v in increasing order, the pair
//           c = 32v + 2l, c + 1 as VDPBF16PS does on Zen 5 (measured) and Intel alike:
//           acc = (acc + w[c+1] x'[c+1]) + w[c] x'[c], each product exact in float32 (8 x 8
//           significant bits), each sum rounded to float32, subnormal sums flushed to zero;
//   y     = the 16 lanes summed by the AVX-512 reduce_add tree (lane i + lane i + 8, then + 4,
//           + 2, + 1).
// Views marked f32_activations (and every other dtype) take the float32 reference instead.
// Columns past the row's end count as zero pairs. Products that underflow float32 (|w x'| below
// 2^-126, far below any activation the model produces) may differ in the sign of a zero.
#include <cmath>
#include <cstring>

#include "kernels/scalar/scalar.h"
#include "kernels/variant.h"

namespace dsv3::kernels::scalar {

uint16_t bf16_rne_daz(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  if ((b & 0x7f800000u) == 0) return uint16_t((b >> 16) & 0x8000u);  // zero or subnormal: signed zero
  return f32_to_bf16(v);
}

namespace {

float flush(float v) { return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v; }

// The BF16 value of weight (r, c) of a BF16 or FP8 matrix, as a float.
float weight_bf16(const Matrix& w, int64_t r, int64_t c) {
  if (w.dtype == DType::BF16) {
    uint16_t h;
    std::memcpy(&h, static_cast<const uint8_t*>(w.data) + size_t(r * w.cols + c) * 2, 2);
    return flush(bf16_to_f32(h));
  }
  return fp8e4m3_to_f32(static_cast<const uint8_t*>(w.data)[r * w.cols + c]);
}

float x_factor(const Matrix& w, int64_t r, int64_t c) {
  return w.dtype == DType::F8_E4M3 && w.quantized() ? w.block_scale(r, c) : 1.0f;
}

constexpr int kLanes = 16;

float lane_tree(float (&lane)[kLanes]) {
  for (int half = kLanes / 2; half >= 1; half /= 2)
    for (int i = 0; i < half; ++i) lane[i] += lane[i + half];
  return lane[0];
}

}  // namespace

void linear_rows_bf16dot(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1,
                         float* scratch) {
  if ((w.dtype != DType::BF16 && w.dtype != DType::F8_E4M3) || w.f32_activations)
    return linear_rows(w, x, y, n, r0, r1, scratch);
  const int64_t cols = w.cols, vecs = (cols + 2 * kLanes - 1) / (2 * kLanes);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * cols;
      float lane[kLanes] = {};
      for (int64_t v = 0; v < vecs; ++v)
        for (int l = 0; l < kLanes; ++l) {
          float p[2] = {0.0f, 0.0f};  // w x' of columns c, c + 1
          for (int e = 0; e < 2; ++e) {
            const int64_t c = v * 2 * kLanes + 2 * l + e;
            if (c < cols) p[e] = weight_bf16(w, r, c) * bf16_to_f32(bf16_rne_daz(xt[c] * x_factor(w, r, c)));
          }
          lane[l] = flush(flush(lane[l] + p[1]) + p[0]);
        }
      y[t * w.rows + r] = lane_tree(lane);
    }
}

const Variant& bf16dot_variant() {
  static const Variant v = [] {
    Variant b = variant();
    b.name = "scalar-bf16";
    b.linear_rows = linear_rows_bf16dot;
    b.bf16_activations = true;
    return b;
  }();
  return v;
}

}  // namespace dsv3::kernels::scalar
