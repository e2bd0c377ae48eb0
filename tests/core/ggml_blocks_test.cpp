// ggml's block formats (core/ggml_blocks.h): the sizes and type ids, every format's dequantizer
// against a second decoder written here element by element from the layout (which bits of
// which byte hold value e), the quantizers against llama-quantize's own output on rows of the
// embedded model (testdata/ggml_blocks, cut by its extract.py), and round trips.
#include "core/ggml_blocks.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace dsv3::ggml {
namespace {

constexpr DType kBlockTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                 DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

TEST(GgmlBlocks, SizesNamesAndTypeIds) {
  struct Want {
    DType t;
    const char* name;
    int64_t elems;
    size_t bytes;
    uint32_t id;
  };
  const Want want[] = {{DType::Q4_0, "Q4_0", 32, 18, 2},   {DType::Q4_1, "Q4_1", 32, 20, 3},
                       {DType::Q5_0, "Q5_0", 32, 22, 6},   {DType::Q5_1, "Q5_1", 32, 24, 7},
                       {DType::Q8_0, "Q8_0", 32, 34, 8},   {DType::Q2_K, "Q2_K", 256, 84, 10},
                       {DType::Q3_K, "Q3_K", 256, 110, 11}, {DType::Q4_K, "Q4_K", 256, 144, 12},
                       {DType::Q5_K, "Q5_K", 256, 176, 13}, {DType::Q6_K, "Q6_K", 256, 210, 14}};
  for (const Want& w : want) {
    EXPECT_TRUE(dtype_is_block(w.t));
    EXPECT_EQ(dtype_name(w.t), w.name);
    EXPECT_EQ(dtype_block_elems(w.t), w.elems);
    EXPECT_EQ(dtype_block_bytes(w.t), w.bytes);
    EXPECT_EQ(dtype_row_bytes(w.t, 4 * w.elems), 4 * w.bytes);
    EXPECT_FALSE(dtype_whole_blocks(w.t, w.elems + 1));
    EXPECT_EQ(ggml_type_of(w.t), w.id);
    EXPECT_EQ(dtype_from_ggml_type(w.id), w.t);
    EXPECT_FALSE(dtype_from_name(w.name).has_value()) << "not a safetensors dtype";
  }
  EXPECT_EQ(dtype_from_ggml_type(0), DType::F32);
  EXPECT_EQ(dtype_from_ggml_type(1), DType::F16);
  EXPECT_EQ(dtype_from_ggml_type(30), DType::BF16);
  EXPECT_FALSE(dtype_from_ggml_type(15).has_value());  // Q8_K: an activation format
  EXPECT_FALSE(dtype_from_ggml_type(1000).has_value());
  EXPECT_FALSE(ggml_type_of(DType::F8_E4M3).has_value());
  EXPECT_FALSE(dtype_is_block(DType::BF16));
  EXPECT_EQ(dtype_block_elems(DType::BF16), 1);
  EXPECT_EQ(dtype_row_bytes(DType::BF16, 7), 14u);
  EXPECT_THROW(dtype_size(DType::Q4_K), Error);  // no whole bytes per element
}

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
int bit(const uint8_t* p, int i) { return (p[i / 8] >> (i % 8)) & 1; }

// Value e of the block at b, read straight from ggml-common.h's layout. The float expressions
// are ggml's (its dequantize_row_*), so the results must agree bit for bit.
float reference_value(DType t, const uint8_t* b, int e) {
  switch (t) {
    case DType::Q4_0: {  // d, qs[16]: value j < 16 in the low nibble of qs[j], j + 16 in the high
      const int q = e < 16 ? b[2 + e] & 15 : b[2 + e - 16] >> 4;
      return float(q - 8) * half(b);
    }
    case DType::Q4_1: {  // d, m, qs[16]
      const int q = e < 16 ? b[4 + e] & 15 : b[4 + e - 16] >> 4;
      return float(q) * half(b) + half(b + 2);
    }
    case DType::Q5_0: {  // d, qh[4] (bit e: fifth bit of value e), qs[16]
      const int q = (e < 16 ? b[6 + e] & 15 : b[6 + e - 16] >> 4) | (bit(b + 2, e) << 4);
      return float(q - 16) * half(b);
    }
    case DType::Q5_1: {  // d, m, qh[4], qs[16]
      const int q = (e < 16 ? b[8 + e] & 15 : b[8 + e - 16] >> 4) | (bit(b + 4, e) << 4);
      return float(q) * half(b) + half(b + 2);
    }
    case DType::Q8_0: return float(int8_t(b[2 + e])) * half(b);
    case DType::Q2_K: {  // scales[16] (low nibble scale, high min), qs[64], d, dmin
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int q = (b[16 + 32 * h + l] >> (2 * k)) & 3, sc = b[e / 16];
      return half(b + 80) * float(sc & 15) * float(q) - half(b + 82) * float(sc >> 4);
    }
    case DType::Q3_K: {  // hmask[32], qs[64], scales[12], d
      const int h = e / 128, k = (e % 128) / 32, l = e % 32, j = e / 16;
      const int q = (b[32 + 32 * h + l] >> (2 * k)) & 3;
      const int high = (b[l] >> (4 * h + k)) & 1;  // hmask bit 4h + k of byte l
      const uint8_t* s = b + 96;  // scale j: low 4 bits in nibble j / 8 of byte j % 8, high 2 bits
      const int sc = ((s[j % 8] >> (4 * (j / 8))) & 15) | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
      return half(b + 108) * float(sc - 32) * float(q - (high ? 0 : 4));
    }
    case DType::Q4_K:
    case DType::Q5_K: {  // d, dmin, scales[12], (qh[32],) qs[128]
      const bool q5 = t == DType::Q5_K;
      const int g = e / 64, r = e % 64, j = e / 32;
      const uint8_t* qs = b + (q5 ? 48 : 16);
      int q = r < 32 ? qs[32 * g + r] & 15 : qs[32 * g + r - 32] >> 4;
      if (q5) q |= ((b[16 + r % 32] >> (2 * g + r / 32)) & 1) << 4;
      const uint8_t* s = b + 4;  // 6-bit scale and min of sub-block j
      int sc, m;
      if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
      } else {
        sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
      }
      return half(b) * float(sc) * float(q) - half(b + 2) * float(m);
    }
    case DType::Q6_K: {  // ql[128], qh[64], scales[16] (int8), d
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int low = (b[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 15;
      const int high = (b[128 + 32 * h + l] >> (2 * k)) & 3;
      return half(b + 208) * float(int8_t(b[192 + e / 16])) * float((low | (high << 4)) - 32);
    }
    default: ADD_FAILURE() << "not a block type"; return 0;
  }
}

// Random blocks with every byte random except the half-float scales, kept finite and moderate.
std::vector<uint8_t> random_blocks(DType t, int64_t nblocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(size_t(nblocks) * dtype_block_bytes(t));
  for (auto& b : bytes) b = uint8_t(rng());
  std::vector<size_t> half_at;  // offsets of d (and m / dmin) within a block
  switch (t) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: half_at = {0}; break;
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: half_at = {0, 2}; break;
    case DType::Q2_K: half_at = {80, 82}; break;
    case DType::Q3_K: half_at = {108}; break;
    case DType::Q6_K: half_at = {208}; break;
    default: break;
  }
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  for (int64_t i = 0; i < nblocks; ++i)
    for (size_t off : half_at) {
      const uint16_t h = f32_to_f16(u(rng));
      std::memcpy(&bytes[size_t(i) * dtype_block_bytes(t) + off], &h, 2);
    }
  return bytes;
}

TEST(GgmlBlocks, DequantizeMatchesTheLayout) {
  for (DType t : kBlockTypes) {
    const int64_t nblocks = 9, be = dtype_block_elems(t);
    const std::vector<uint8_t> bytes = random_blocks(t, nblocks, 7);
    // At an odd address: mapped tensors promise no alignment.
    std::vector<uint8_t> unaligned(bytes.size() + 1);
    std::memcpy(unaligned.data() + 1, bytes.data(), bytes.size());
    std::vector<float> out(size_t(nblocks * be));
    dequantize(t, unaligned.data() + 1, nblocks, out.data());
    for (int64_t i = 0; i < nblocks; ++i)
      for (int e = 0; e < be; ++e)
        ASSERT_EQ(out[size_t(i * be + e)], reference_value(t, &bytes[size_t(i) * dtype_block_bytes(t)], e))
            << dtype_name(t) << " block " << i << " value " << e;
  }
}

TEST(GgmlBlocks, KnownQ4KBlock) {
  // One Q4_K super-block written by hand: d = 0.5, dmin = 0.25, sub-block j has scale j + 1 and
  // minimum 2 j (j >= 4 use the 6-bit packing's high bits: scale 33 for j = 7), value e holds
  // e % 16.
  BlockQ4_K b{};
  b.d = f32_to_f16(0.5f);
  b.dmin = f32_to_f16(0.25f);
  uint8_t sc[8] = {1, 2, 3, 4, 5, 6, 7, 33}, m[8] = {0, 2, 4, 6, 8, 10, 12, 14};
  for (int j = 0; j < 4; ++j) {
    b.scales[j] = sc[j];
    b.scales[j + 4] = m[j];
  }
  for (int j = 4; j < 8; ++j) {
    b.scales[j + 4] = uint8_t((sc[j] & 15) | ((m[j] & 15) << 4));
    b.scales[j - 4] = uint8_t(b.scales[j - 4] | ((sc[j] >> 4) << 6));
    b.scales[j] = uint8_t(b.scales[j] | ((m[j] >> 4) << 6));
  }
  for (int e = 0; e < 256; ++e) {
    const int g = e / 64, r = e % 64;
    if (r < 32)
      b.qs[32 * g + r] = uint8_t((b.qs[32 * g + r] & 0xF0) | (e % 16));
    else
      b.qs[32 * g + r - 32] = uint8_t((b.qs[32 * g + r - 32] & 0x0F) | ((e % 16) << 4));
  }
  float out[256];
  dequantize(DType::Q4_K, &b, 1, out);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(out[e], 0.5f * float(sc[e / 32]) * float(e % 16) - 0.25f * float(m[e / 32])) << e;
}

TEST(GgmlBlocks, KnownQ8AndQ4Blocks) {
  BlockQ8_0 q8{};
  q8.d = f32_to_f16(0.125f);
  for (int j = 0; j < 32; ++j) q8.qs[j] = int8_t(j - 16);
  BlockQ4_0 q4{};
  q4.d = f32_to_f16(-2.0f);
  for (int j = 0; j < 16; ++j) q4.qs[j] = uint8_t(j | ((15 - j) << 4));
  float a[32], b[32];
  dequantize(DType::Q8_0, &q8, 1, a);
  dequantize(DType::Q4_0, &q4, 1, b);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(a[j], float(j - 16) * 0.125f);
    EXPECT_EQ(b[j], float((j < 16 ? j : 31 - j) - 8) * -2.0f);
  }
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  return {std::istreambuf_iterator<char>(f), {}};
}

// llama-quantize's output (no importance matrix) on rows of the embedded model: ours gives the
// same bytes from the same BF16 values. (Should a block ever differ, e.g. a near-tie rounded the
// other way by an FMA-contracted build, the test also reports whether ours fits worse.)
TEST(GgmlBlocks, QuantizeMatchesLlamaQuantize) {
  struct Case {
    DType t;
    const char* stem;
    int64_t cols;
  };
  const Case cases[] = {{DType::Q8_0, "Q8_0.blk.0.ffn_gate", 256},
                        {DType::Q6_K, "Q6_K.blk.0.ffn_gate", 256},
                        {DType::Q4_K, "Q4_K.blk.0.ffn_gate", 256},
                        {DType::Q5_0, "Q5_0.blk.0.attn_output", 128}};
  for (const Case& c : cases) {
    const std::string base = std::string(DSV3_TESTDATA_DIR) + "/ggml_blocks/" + c.stem;
    const std::vector<uint8_t> src = read_file(base + ".bf16"), want = read_file(base + ".blocks");
    const int64_t n = int64_t(src.size() / 2), be = dtype_block_elems(c.t), nb = n / be;
    const size_t bb = dtype_block_bytes(c.t);
    ASSERT_EQ(want.size(), size_t(nb) * bb) << c.stem;
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, &src[size_t(2 * i)], 2);
      x[size_t(i)] = bf16_to_f32(h);
    }
    std::vector<uint8_t> got(want.size());
    quantize(c.t, x.data(), n, got.data());
    int64_t differing = 0;
    for (int64_t i = 0; i < nb; ++i) {
      if (std::memcmp(&got[size_t(i) * bb], &want[size_t(i) * bb], bb) == 0) continue;
      ++differing;
      std::vector<float> a(static_cast<size_t>(be)), b(static_cast<size_t>(be));
      dequantize(c.t, &got[size_t(i) * bb], 1, a.data());
      dequantize(c.t, &want[size_t(i) * bb], 1, b.data());
      double ea = 0, eb = 0;
      for (int64_t e = 0; e < be; ++e) {
        ea += std::pow(a[size_t(e)] - x[size_t(i * be + e)], 2);
        eb += std::pow(b[size_t(e)] - x[size_t(i * be + e)], 2);
      }
      EXPECT_LE(ea, eb * 1.01) << c.stem << " block " << i;
    }
    EXPECT_EQ(differing, 0) << c.stem << ": " << differing << " of " << nb << " blocks differ";
  }
}

// Relative RMS error of quantize + dequantize on a Gaussian row with one outlier, per type:
// about 1.25x what these quantizers measured (Q8_0 0.0065, Q6_K 0.022, Q5_K 0.039, Q5_1 0.039,
// Q5_0 0.051, Q4_K 0.075, Q4_1 0.082, Q4_0 0.10, Q3_K 0.15, Q2_K 0.29). A wrong packing or scale
// gives errors of order 1.
TEST(GgmlBlocks, RoundTripError) {
  struct Bound {
    DType t;
    double rel_rms;
  };
  const Bound bounds[] = {{DType::Q8_0, 0.008}, {DType::Q6_K, 0.028}, {DType::Q5_0, 0.063}, {DType::Q5_1, 0.05},
                          {DType::Q5_K, 0.048}, {DType::Q4_0, 0.125}, {DType::Q4_1, 0.1},   {DType::Q4_K, 0.094},
                          {DType::Q3_K, 0.19},  {DType::Q2_K, 0.36}};
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 0.02f);
  const int64_t n = 4096;
  std::vector<float> x(n), y(n);
  for (auto& v : x) v = nd(rng);
  x[100] = 0.5f;  // an outlier, as real weights have
  for (const Bound& b : bounds) {
    std::vector<uint8_t> q(size_t(dtype_row_bytes(b.t, n)));
    quantize(b.t, x.data(), n, q.data());
    dequantize(b.t, q.data(), n / dtype_block_elems(b.t), y.data());
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; ++i) {
      err += std::pow(double(y[size_t(i)]) - x[size_t(i)], 2);
      ref += std::pow(double(x[size_t(i)]), 2);
    }
    EXPECT_LT(std::sqrt(err / ref), b.rel_rms) << dtype_name(b.t);
  }
}

TEST(GgmlBlocks, ZeroAndConstantBlocks) {
  for (DType t : kBlockTypes) {
    const int64_t n = 512;
    std::vector<uint8_t> q(size_t(dtype_row_bytes(t, n)));
    std::vector<float> x(n, 0.0f), y(n, 1.0f);
    quantize(t, x.data(), n, q.data());
    dequantize(t, q.data(), n / dtype_block_elems(t), y.data());
    for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_name(t);
    std::fill(x.begin(), x.end(), -0.75f);
    quantize(t, x.data(), n, q.data());
    dequantize(t, q.data(), n / dtype_block_elems(t), y.data());
    for (float v : y) ASSERT_NEAR(v, -0.75f, 0.75f * 0.05f) << dtype_name(t);
  }
}

TEST(GgmlBlocks, QuantizeRejectsBadInput) {
  std::vector<float> x(256, 0.1f);
  std::vector<uint8_t> q(210);
  x[77] = NAN;
  try {
    quantize(DType::Q6_K, x.data(), 256, q.data());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("value 77 is not finite"), std::string::npos) << e.what();
  }
  x[77] = 0.1f;
  EXPECT_THROW(quantize(DType::Q6_K, x.data(), 255, q.data()), Error);
  EXPECT_THROW(quantize(DType::BF16, x.data(), 256, q.data()), Error);
}

}  // namespace
}  // namespace dsv3::ggml
