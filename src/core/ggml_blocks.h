// ggml's block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants Q2_K ... Q6_K) as
// ggml-common.h lays them out, with the reference dequantizers (what each block means, bit for
// bit as ggml-quants.c's dequantize_row_*) and quantizers (llama.cpp's quantize_row_*_ref: what
// llama-quantize writes without an importance matrix). The kernels' scalar variant dequantizes
// through these; the SIMD kernels are tested against them.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace dsv3::ggml {

constexpr int kQK = 32;    // values per block of the 32-wide formats (QK4_0 ... QK8_0)
constexpr int kQK_K = 256;  // values per super-block of the K-quants (QK_K)

// Scales and minima are IEEE half floats (ggml_half). Quantized values are unsigned nibbles or
// crumbs with an offset (Q4_0: q - 8), except Q8_0's and Q6_K's signed scales.
struct BlockQ4_0 {  // x[j] = (q[j] - 8) * d; q[j] = qs[j] & 15, q[j + 16] = qs[j] >> 4
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {  // x[j] = q[j] * d + m
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {  // x[j] = (q[j] - 16) * d; bit 4 of q[j] is bit j of qh (little endian)
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {  // x[j] = q[j] * d + m
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {  // x[j] = qs[j] * d
  uint16_t d;
  int8_t qs[kQK];
};
// K-quants: 256 values in 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 8 of 32 (Q4_K, Q5_K), each
// with its own quantized scale (and minimum) times the super-block's d (and dmin).
struct BlockQ2_K {  // x = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d, dmin;
};
struct BlockQ3_K {  // x = d * (sc - 32) * (q - 4 * !hbit), q in 0..3; 6-bit scales packed in 12 bytes
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4_K {  // x = d * sc * q - dmin * m, q in 0..15; 6-bit sc and m packed in 12 bytes
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ5_K {  // Q4_K with a fifth bit per value in qh
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {  // x = d * sc * (q - 32), q in 0..63 (4 bits in ql, 2 in qh), sc int8
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};

// Values of `nblocks` consecutive blocks of block format `t` at `blocks` (no alignment needed)
// into out[0, nblocks * dtype_block_elems(t)), exactly as ggml's dequantize_row_* computes them.
void dequantize(DType t, const void* blocks, int64_t nblocks, float* out);

// Sub-block j (of 8) of a Q4_K/Q5_K super-block: its 6-bit scale and minimum from the 12 packed
// bytes (ggml's get_scale_min_k4).
void q4k_scale_min(int j, const uint8_t* scales, uint8_t* sc, uint8_t* m);
// Sub-block j (of 16) of a Q3_K super-block: its 6-bit scale with the offset of 32 removed.
int q3k_scale(int j, const uint8_t* scales);

// x[0, n) (n whole blocks of `t`) quantized into n / dtype_block_elems(t) blocks at `out`, as
// llama.cpp's quantize_row_*_ref (llama-quantize without an importance matrix): round-to-nearest
// for the 32-wide formats, a search over scales for the K-quants (make_qx_quants /
// make_qkx2_quants / make_q3_quants). Throws dsv3::Error naming the first non-finite value.
void quantize(DType t, const float* x, int64_t n, void* out);

}  // namespace dsv3::ggml
