#include "core/ggml_blocks.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

// Every formula below keeps ggml-quants.c's order of float operations (its dequantize_row_* and
// quantize_row_*_ref), so values and quantized bytes match ggml's where the compiler does not
// contract a multiply-add (this file is built without FMA).
namespace dsv3::ggml {

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

namespace {

inline float h2f(uint16_t h) { return f16_to_f32(h); }

// ---- Dequantization: one block into out[0, block elems) ---------------------------------------

void dequant(const BlockQ4_0& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = float((b.qs[j] & 0x0F) - 8) * d;
    y[j + kQK / 2] = float((b.qs[j] >> 4) - 8) * d;
  }
}

void dequant(const BlockQ4_1& b, float* y) {
  const float d = h2f(b.d), m = h2f(b.m);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = float(b.qs[j] & 0x0F) * d + m;
    y[j + kQK / 2] = float(b.qs[j] >> 4) * d + m;
  }
}

template <class B>
uint32_t load_qh(const B& b) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, sizeof qh);
  return qh;
}

void dequant(const BlockQ5_0& b, float* y) {
  const float d = h2f(b.d);
  const uint32_t qh = load_qh(b);
  for (int j = 0; j < kQK / 2; ++j) {
    const int h0 = int((qh >> j) << 4) & 0x10, h1 = int(qh >> (j + 12)) & 0x10;
    y[j] = float(((b.qs[j] & 0x0F) | h0) - 16) * d;
    y[j + kQK / 2] = float(((b.qs[j] >> 4) | h1) - 16) * d;
  }
}

void dequant(const BlockQ5_1& b, float* y) {
  const float d = h2f(b.d), m = h2f(b.m);
  const uint32_t qh = load_qh(b);
  for (int j = 0; j < kQK / 2; ++j) {
    const int h0 = int((qh >> j) << 4) & 0x10, h1 = int(qh >> (j + 12)) & 0x10;
    y[j] = float((b.qs[j] & 0x0F) | h0) * d + m;
    y[j + kQK / 2] = float((b.qs[j] >> 4) | h1) * d + m;
  }
}

void dequant(const BlockQ8_0& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = float(b.qs[j]) * d;
}

void dequant(const BlockQ2_K& b, float* y) {
  const float d = h2f(b.d), min = h2f(b.dmin);
  const uint8_t* q = b.qs;
  int is = 0;
  for (int n = 0; n < kQK_K; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2)
      for (int half = 0; half < 2; ++half) {
        const uint8_t sc = b.scales[is++];
        const float dl = d * float(sc & 0xF), ml = min * float(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
      }
}

void dequant(const BlockQ3_K& b, float* y) {
  const float d_all = h2f(b.d);
  const uint8_t* q = b.qs;
  uint8_t m = 1;
  int is = 0;
  for (int n = 0; n < kQK_K; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2, m <<= 1)
      for (int half = 0; half < 2; ++half) {
        const float dl = d_all * float(q3k_scale(is++, b.scales));
        for (int l = 16 * half; l < 16 * half + 16; ++l)
          *y++ = dl * float(((q[l] >> shift) & 3) - ((b.hmask[l] & m) ? 0 : 4));
      }
}

void dequant(const BlockQ4_K& b, float* y) {
  const float d = h2f(b.d), min = h2f(b.dmin);
  const uint8_t* q = b.qs;
  for (int is = 0; is < 8; is += 2, q += 32) {
    uint8_t sc, m;
    q4k_scale_min(is, b.scales, &sc, &m);
    const float d1 = d * float(sc), m1 = min * float(m);
    q4k_scale_min(is + 1, b.scales, &sc, &m);
    const float d2 = d * float(sc), m2 = min * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
  }
}

void dequant(const BlockQ5_K& b, float* y) {
  const float d = h2f(b.d), min = h2f(b.dmin);
  const uint8_t* ql = b.qs;
  uint8_t u1 = 1, u2 = 2;
  for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    uint8_t sc, m;
    q4k_scale_min(is, b.scales, &sc, &m);
    const float d1 = d * float(sc), m1 = min * float(m);
    q4k_scale_min(is + 1, b.scales, &sc, &m);
    const float d2 = d * float(sc), m2 = min * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (b.qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (b.qh[l] & u2 ? 16 : 0)) - m2;
  }
}

void dequant(const BlockQ6_K& b, float* y) {
  const float d = h2f(b.d);
  const uint8_t* ql = b.ql;
  const uint8_t* qh = b.qh;
  const int8_t* sc = b.scales;
  for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
}

template <class B>
void dequant_blocks(const void* blocks, int64_t nblocks, float* out, int elems) {
  const uint8_t* p = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nblocks; ++i) {
    B b;  // mapped files carry no alignment guarantee
    std::memcpy(&b, p + size_t(i) * sizeof(B), sizeof(B));
    dequant(b, out + i * elems);
  }
}

}  // namespace

void q4k_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

int q3k_scale(int j, const uint8_t* scales) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

void dequantize(DType t, const void* blocks, int64_t nblocks, float* out) {
  switch (t) {
    case DType::Q4_0: return dequant_blocks<BlockQ4_0>(blocks, nblocks, out, kQK);
    case DType::Q4_1: return dequant_blocks<BlockQ4_1>(blocks, nblocks, out, kQK);
    case DType::Q5_0: return dequant_blocks<BlockQ5_0>(blocks, nblocks, out, kQK);
    case DType::Q5_1: return dequant_blocks<BlockQ5_1>(blocks, nblocks, out, kQK);
    case DType::Q8_0: return dequant_blocks<BlockQ8_0>(blocks, nblocks, out, kQK);
    case DType::Q2_K: return dequant_blocks<BlockQ2_K>(blocks, nblocks, out, kQK_K);
    case DType::Q3_K: return dequant_blocks<BlockQ3_K>(blocks, nblocks, out, kQK_K);
    case DType::Q4_K: return dequant_blocks<BlockQ4_K>(blocks, nblocks, out, kQK_K);
    case DType::Q5_K: return dequant_blocks<BlockQ5_K>(blocks, nblocks, out, kQK_K);
    case DType::Q6_K: return dequant_blocks<BlockQ6_K>(blocks, nblocks, out, kQK_K);
    default: fail("ggml blocks: ", dtype_name(t), " is not a block format");
  }
}

}  // namespace dsv3::ggml
