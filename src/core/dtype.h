// Element types of checkpoint tensors and the scalar conversions between them and float32.
// Besides plain element types, ggml's block formats (Q8_0 ... Q6_K, core/ggml_blocks.h): a row
// of such a tensor is a run of fixed-size blocks, each holding `dtype_block_elems` values.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dsv3 {

enum class DType : uint8_t {
  F32, F16, BF16, F8_E4M3, F64, I64, I32, I16, I8, U8, BOOL,
  // ggml block formats, as ggml-common.h defines them: 32 values per block (Q*_0, Q*_1) or 256
  // in super-blocks of 16 or 32 (the K-quants).
  Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
};

// Whether `t` is a ggml block format (values are stored in blocks, not one by one).
bool dtype_is_block(DType t);
// Values per block: 1 for the plain types.
int64_t dtype_block_elems(DType t);
// Bytes per block: dtype_size for the plain types.
size_t dtype_block_bytes(DType t);
// Bytes per element; plain types only (a block format has no whole number: use
// dtype_row_bytes).
size_t dtype_size(DType t);
// Whether n values of `t` are whole blocks (always true for plain types).
inline bool dtype_whole_blocks(DType t, int64_t n) { return n % dtype_block_elems(t) == 0; }
// Bytes of n consecutive values (a row); n must be whole blocks.
uint64_t dtype_row_bytes(DType t, int64_t n);
// Name: as safetensors headers write plain types ("F32", "BF16", "F8_E4M3"), as ggml writes
// block formats ("Q4_K").
std::string_view dtype_name(DType t);
// The plain type a safetensors header names (block formats are not safetensors dtypes).
std::optional<DType> dtype_from_name(std::string_view name);
// ggml's type ids (enum ggml_type, as GGUF files store them) for the types both know: F32,
// F16, BF16, F64, I8-I64 and the block formats above.
std::optional<DType> dtype_from_ggml_type(uint32_t ggml_type);
std::optional<uint32_t> ggml_type_of(DType t);

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
