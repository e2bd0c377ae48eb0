// FP8 (e4m3) quantization as DeepSeek-V3's mixed-precision framework does it (report section
// 3.3.2): online max-abs scaling per 1x128 tile of activations and gradients and per 128x128
// block of weights, scale = amax / 448, value = e4m3(x / scale) * scale.
#pragma once
#include <cstdint>

namespace dsv3::train {

constexpr int64_t kFp8Tile = 128;  // the report's tile / block edge

// Quantize-dequantize x [rows, cols] into out: each row is split into groups of kFp8Tile
// consecutive elements (the last group of a row may be shorter), each with its own scale.
// out may alias x.
void fp8_fake_quant_rows(const float* x, int64_t rows, int64_t cols, float* out);
// The same with groups of kFp8Tile consecutive rows of each column (128x1 tiles): how the
// token-dimension operands of a weight-gradient GEMM are quantized.
void fp8_fake_quant_cols(const float* x, int64_t rows, int64_t cols, float* out);
// Weights: kFp8Tile x kFp8Tile blocks (edge blocks smaller). Writes the dequantized values to
// `out` (may be null or alias w), and when non-null the e4m3 codes [rows, cols] and the
// per-block scale_inv [ceil(rows/128), ceil(cols/128)] exactly as a checkpoint stores them
// (value = fp8e4m3_to_f32(code) * scale_inv).
void fp8_quant_blocks(const float* w, int64_t rows, int64_t cols, float* out, uint8_t* codes, float* scale_inv);

}  // namespace dsv3::train
