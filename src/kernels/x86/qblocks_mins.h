// The block formats' minima terms (simd/qblocks.h) as 8-wide float dot products, with AVX2 +
// FMA, for both x86 traits (avx2/qtraits.h, avx512/qtraits.h). Internal linkage: each ISA's
// translation unit gets its own copy, compiled with its own flags.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace dsv3::kernels::x86 {

static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline __m256 u8x8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// sum_j m[j] b[j], j < 8 (Q4_K / Q5_K minima times sums of 32 activations).
static inline float mins_dot8(const uint8_t* m, const float* b) {
  return hsum8(_mm256_mul_ps(u8x8(m), _mm256_loadu_ps(b)));
}
// sum_j (s[j] >> 4) b[j], j < 16 (Q2_K minima, the high nibbles of its scales, times sums of 16).
static inline float mins_dot16_hi(const uint8_t* s, const float* b) {
  const __m256 lo = _mm256_mul_ps(u8x8(s), _mm256_set1_ps(1.0f / 16)), hi = _mm256_mul_ps(u8x8(s + 8), _mm256_set1_ps(1.0f / 16));
  const __m256 m0 = _mm256_floor_ps(lo), m1 = _mm256_floor_ps(hi);  // s >> 4, exactly
  return hsum8(_mm256_fmadd_ps(m1, _mm256_loadu_ps(b + 8), _mm256_mul_ps(m0, _mm256_loadu_ps(b))));
}

}  // namespace dsv3::kernels::x86
