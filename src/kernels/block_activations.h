// Which integer activations the SIMD kernels give each ggml block format (simd/qblocks.h, the
// decode tiles; simd/qgemm.h, the GEMM; scalar/qblocks_int16.cpp, their twin). One place, so
// that the three cannot disagree.
//
// int16 (|xi| <= 16383 per 256 columns) for Q8_0, Q4_0/1, Q5_0/1 and Q6_K; 8-bit (|xi| <= 127,
// llama.cpp's Q8_K grid) for the low-bit K-quants Q2_K, Q3_K, Q4_K and Q5_K, whose values are
// unsigned (their minima, and Q3_K's offset of -4, are a separate term), so VPMADDUBSW multiplies
// them with the activations directly: ~6 instructions per 64 weights against ~12 with int16.
// Chosen by measurement (mean KL from the exactly dequantized model, docs/gguf.md): with 8-bit
// activations everywhere tests/gguf's kjv files gave Q4_K_M 7.0e-4 (llama.cpp 3.5e-3; the
// issue's bar is half of llama.cpp's), Q6_K 4.7e-4 (llama.cpp 5.6e-4) and Q8_0 4.9e-4 (llama.cpp
// 2.3e-4), so Q6_K and the 32-value formats keep int16; Q4_K alone took 8 bits for 2.4e-4 on
// kjv-Q4_K_M. Q2_K, Q3_K and Q5_K (the experts of 2-5-bit files) take them on the same grid:
// kjv quantized to Q2_K_XL moved from 9.5e-4 to 1.05e-3 (`perplexity --compare-reference`).
#pragma once
#include "core/dtype.h"

namespace dsv3::kernels {

constexpr bool int8_activations(DType t) {
  return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K;
}
// The largest |xi| of a block format's activations.
constexpr int activation_max(DType t) { return int8_activations(t) ? 127 : 16383; }

}  // namespace dsv3::kernels
