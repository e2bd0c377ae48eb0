#include "core/dtype.h"

#include <array>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace dsv3 {

namespace {
struct BlockInfo {
  DType dtype;
  std::string_view name;
  int64_t elems;  // values per block
  size_t bytes;   // bytes per block
  uint32_t ggml;  // enum ggml_type
};
// ggml-common.h's block structs (sizes checked against core/ggml_blocks.h's in ggml_blocks.cpp).
constexpr std::array<BlockInfo, 10> kBlocks{{
    {DType::Q4_0, "Q4_0", 32, 18, 2},
    {DType::Q4_1, "Q4_1", 32, 20, 3},
    {DType::Q5_0, "Q5_0", 32, 22, 6},
    {DType::Q5_1, "Q5_1", 32, 24, 7},
    {DType::Q8_0, "Q8_0", 32, 34, 8},
    {DType::Q2_K, "Q2_K", 256, 84, 10},
    {DType::Q3_K, "Q3_K", 256, 110, 11},
    {DType::Q4_K, "Q4_K", 256, 144, 12},
    {DType::Q5_K, "Q5_K", 256, 176, 13},
    {DType::Q6_K, "Q6_K", 256, 210, 14},
}};
// ggml_type ids of the plain types ggml has.
constexpr std::array<std::pair<DType, uint32_t>, 8> kGgmlPlain{{
    {DType::F32, 0}, {DType::F16, 1}, {DType::I8, 24}, {DType::I16, 25}, {DType::I32, 26},
    {DType::I64, 27}, {DType::F64, 28}, {DType::BF16, 30}}};

const BlockInfo* block_info(DType t) {
  for (const BlockInfo& b : kBlocks)
    if (b.dtype == t) return &b;
  return nullptr;
}

size_t plain_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::F8_E4M3: case DType::I8: case DType::U8: case DType::BOOL: return 1;
    default: return 0;
  }
}
}  // namespace

bool dtype_is_block(DType t) { return block_info(t) != nullptr; }

int64_t dtype_block_elems(DType t) {
  const BlockInfo* b = block_info(t);
  return b != nullptr ? b->elems : 1;
}

size_t dtype_block_bytes(DType t) {
  const BlockInfo* b = block_info(t);
  return b != nullptr ? b->bytes : plain_size(t);
}

size_t dtype_size(DType t) {
  DSV3_ASSERT(!dtype_is_block(t));
  return plain_size(t);
}

uint64_t dtype_row_bytes(DType t, int64_t n) {
  DSV3_ASSERT(n >= 0 && dtype_whole_blocks(t, n));
  return uint64_t(n / dtype_block_elems(t)) * dtype_block_bytes(t);
}

namespace {
constexpr std::array<std::pair<DType, std::string_view>, 11> kNames{{
    {DType::F32, "F32"}, {DType::F16, "F16"}, {DType::BF16, "BF16"}, {DType::F8_E4M3, "F8_E4M3"},
    {DType::F64, "F64"}, {DType::I64, "I64"}, {DType::I32, "I32"}, {DType::I16, "I16"},
    {DType::I8, "I8"}, {DType::U8, "U8"}, {DType::BOOL, "BOOL"}}};
}  // namespace

std::string_view dtype_name(DType t) {
  for (auto& [d, n] : kNames)
    if (d == t) return n;
  if (const BlockInfo* b = block_info(t)) return b->name;
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (auto& [d, n] : kNames)
    if (n == name) return d;
  return std::nullopt;
}

std::optional<DType> dtype_from_ggml_type(uint32_t ggml_type) {
  for (auto& [d, id] : kGgmlPlain)
    if (id == ggml_type) return d;
  for (const BlockInfo& b : kBlocks)
    if (b.ggml == ggml_type) return b.dtype;
  return std::nullopt;
}

std::optional<uint32_t> ggml_type_of(DType t) {
  for (auto& [d, id] : kGgmlPlain)
    if (d == t) return id;
  if (const BlockInfo* b = block_info(t)) return b->ggml;
  return std::nullopt;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  float mag;
  if (exp == 0) {
    mag = std::ldexp(float(man), -24);
  } else if (exp == 31) {
    mag = man ? NAN : INFINITY;
  } else {
    mag = std::ldexp(float(man | 0x400), int(exp) - 25);
  }
  uint32_t u;
  std::memcpy(&u, &mag, 4);
  u |= sign;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00;
  if (a >= 65520.0f) return sign | 0x7c00;  // rounds to infinity
  if (a < std::ldexp(1.0f, -14)) {          // subnormal: multiples of 2^-24
    const float q = std::nearbyint(a * 16777216.0f);  // default rounding mode is to-nearest-even
    return sign | uint16_t(q);
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  float q = std::nearbyint(std::ldexp(m, 11));  // 11 significant bits
  if (q >= 2048.0f) { q /= 2; ++e; }
  const uint16_t exp = uint16_t(e - 1 + 15);
  if (exp >= 31) return sign | 0x7c00;
  return sign | uint16_t(exp << 10) | (uint16_t(q) & 0x3ff);
}

namespace {
// Bit-level definition of e4m3fn, evaluated at compile time.
constexpr float decode_fp8(uint8_t c) {
  const int sign = c >> 7, exp = (c >> 3) & 0xf, man = c & 7;
  if (exp == 0xf && man == 7) return std::numeric_limits<float>::quiet_NaN();
  float v;
  if (exp == 0) {
    v = float(man) / 512.0f;  // subnormal: man/8 * 2^-6
  } else {
    v = float(8 + man) / 8.0f;  // (1 + man/8) * 2^(exp-7)
    for (int i = 7; i < exp; ++i) v *= 2.0f;
    for (int i = exp; i < 7; ++i) v /= 2.0f;
  }
  return sign ? -v : v;
}
constexpr std::array<float, 256> make_fp8_table() {
  std::array<float, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = decode_fp8(uint8_t(i));
  return t;
}
constexpr std::array<float, 256> kFp8Table = make_fp8_table();
}  // namespace

const float* const kFp8E4M3ToF32 = kFp8Table.data();

uint8_t f32_to_fp8e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= kFp8E4M3Max) return sign | 0x7e;
  if (a < std::ldexp(1.0f, -6)) {  // subnormal range: multiples of 2^-9
    const int q = int(std::nearbyint(a * 512.0f));  // q <= 8; q == 8 is the smallest normal
    return sign | uint8_t(q);
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int q = int(std::nearbyint(std::ldexp(m, 4)));  // 4 significant bits: 8..16
  if (q == 16) { q = 8; ++e; }
  const int exp = e - 1 + 7;
  if (exp > 15 || (exp == 15 && q - 8 == 7)) return sign | 0x7e;
  return sign | uint8_t(exp << 3) | uint8_t(q - 8);
}

}  // namespace dsv3
