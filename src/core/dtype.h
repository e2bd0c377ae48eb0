// Element types of checkpoint tensors and the scalar conversions between them and float32.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dsv3 {

enum class DType : uint8_t { F32, F16, BF16, F8_E4M3, F64, I64, I32, I16, I8, U8, BOOL };

// Bytes per element.
size_t dtype_size(DType t);
// Name as written in safetensors headers ("F32", "BF16", "F8_E4M3", ...).
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as torch's float->bfloat16 cast; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// float8_e4m3fn (OCP FP8 E4M3, "fn": no infinities, S.1111.111 is NaN, max finite 448).
// Decoding goes through a 256-entry table built once.
extern const float* const kFp8E4M3ToF32;
inline float fp8e4m3_to_f32(uint8_t code) { return kFp8E4M3ToF32[code]; }
// Round to nearest even, saturating to +-448 (what a quantizer wants; NaN maps to NaN).
uint8_t f32_to_fp8e4m3(float f);

constexpr float kFp8E4M3Max = 448.0f;

}  // namespace dsv3
