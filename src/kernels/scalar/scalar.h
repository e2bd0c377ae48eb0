// Scalar reference kernels: plain loops, float32 accumulation, no intrinsics. They define what
// every faster variant must compute and are what the tests compare those variants against.
#pragma once
#include <cstdint>

#include "kernels/matrix.h"

namespace dsv3::kernels::scalar {

// Dequantizes columns [c0, c0 + n) of row r into out.
void dequant_row_range(const Matrix& w, int64_t r, int64_t c0, int64_t n, float* out);
// Rows [r0, r1) of y = W x for n tokens; `scratch` holds w.cols floats.
void linear_rows(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float* scratch);
void linear_transposed_acc(const Matrix& w, const float* x, float* y, int64_t n = 1);
void rmsnorm(const float* x, const Matrix& weight, float eps, float* y);
void rope_interleaved(float* x, const float* cos, const float* sin, int64_t dim);
void softmax(float* x, int64_t n);
float softmax_partial(float* x, int64_t n, float scale, float* max);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
float dot(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);
void matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, bool b_trans,
            float* c, int64_t ldc);

// The avx512bf16 variant's products written as plain loops (scalar/bf16dot.cpp): BF16 and FP8
// weights times activations rounded to BF16, in VDPBF16PS's order; other dtypes as linear_rows.
void linear_rows_bf16dot(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1,
                         float* scratch);
// What the SIMD variants compute for weights in ggml block formats, as plain loops
// (scalar/qblocks_int16.cpp): activations quantized to int16 per 256 columns (8 bits for the
// formats kernels/block_activations.h names), exact int32 sums per block in `lanes` lanes (16:
// avx512, 8: avx2), float chains per lane, the lanes' halving tree (simd/qblocks.h). Rows [r0, r1) of y = W x for n tokens, as linear_rows.
bool int16_activations_supported(DType t);
void linear_rows_int16(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, int lanes);
// float32 -> BF16 as VCVTNE2PS2BF16 rounds: to nearest even, subnormals read as zero.
uint16_t bf16_rne_daz(float v);

}  // namespace dsv3::kernels::scalar
