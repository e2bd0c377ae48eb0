// The 8-bit K-quant tiles' per-block steps (simd/qblocks.h: scale unpacks, the integer dots of
// the minima and of Q3_K's offset, the float step of 4 rows), with AVX2 + FMA, for both x86
// traits (avx2/qtraits.h, avx512/qtraits.h). Internal linkage: each ISA's translation unit gets
// its own copy, compiled with its own flags.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace dsv3::kernels::x86 {

// Q3_K's 12 bytes of 6-bit scales (at p) as 16 signed scales (ggml::q3k_scale), with vector
// shifts on 32-bit words: scale j's low nibble is nibble j / 8 of byte j % 8, its high 2 bits are
// bits 2 (j / 4) of byte 8 + j % 4. One 16-byte store, so that the 8-byte loads of its halves
// that follow are forwarded from it (scalar stores of the parts stalled those loads ~15 cycles).
static inline void q3k_scales(const uint8_t* p, int8_t* out) {
  uint32_t u2;
  std::memcpy(&u2, p + 8, 4);
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));  // u0 u1
  const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_unpacklo_epi64(v, v), _mm_setr_epi32(0, 0, 4, 4)),
                                   _mm_set1_epi32(0x0f0f0f0f));
  const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(int(u2)), _mm_setr_epi32(0, 2, 4, 6)),
                                   _mm_set1_epi32(0x03030303));
  const __m128i sc = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi32(hi, 4)), _mm_set1_epi8(32));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), sc);
}

// Q4_K / Q5_K's 12 bytes of 6-bit scales and minima (at p, 4 bytes into the block) as 16 bytes:
// the 8 scales, then the 8 minima (ggml::q4k_scale_min): bytes 0-3 hold scales 0-3 in their low
// 6 bits and scales 4-7's high 2 bits in their top ones, bytes 4-7 the same for the minima,
// bytes 8-11 scales 4-7's low nibbles and minima 4-7's high ones. Two shuffles place u0 u2 u1 u2
// and 0 u0 0 u1; 16-bit shifts suffice, the masks keeping each byte's own bits.
static inline __m128i q4k_scales_mins(const uint8_t* p) {
  const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));  // 12 bytes used
  const __m128i a = _mm_shuffle_epi8(s, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
  const __m128i b = _mm_shuffle_epi8(s, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
  const __m128i low = _mm_and_si128(a, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0));
  const __m128i mhi = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_setr_epi32(0, 0, 0, 0x0f0f0f0f));
  const __m128i top = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30));  // (byte >> 6) << 4
  return _mm_or_si128(_mm_or_si128(low, mhi), top);
}
// The per-block float step of simd/qblocks.h's tile8 for up to 4 rows at once, row i in lane i
// (the same IEEE operations per row as one at a time): the rows' d and d_min (each Q4_K block's
// first 4 bytes, at b[i]) as floats; their minima dots, sum_j m[j] s[j] over the 8 minima (int16,
// from q4k_scales_mins) and int16 sums of 32 activations, as int32 (exact).
struct DMin4 {
  __m128 d, dmin;
};
static inline DMin4 q4k_d_dmin4(const uint8_t* const (&b)[4]) {
  uint32_t u[4];
  for (int i = 0; i < 4; ++i) std::memcpy(&u[i], b[i], 4);
  const __m256 f = _mm256_cvtph_ps(_mm_setr_epi32(int(u[0]), int(u[1]), int(u[2]), int(u[3])));  // d0 dmin0 d1 ...
  const __m256 g = _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
  return {_mm256_castps256_ps128(g), _mm256_extractf128_ps(g, 1)};
}
static inline __m128i mins_isum8x4(const __m128i (&m16)[4], const int16_t* s) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
  return _mm_hadd_epi32(_mm_hadd_epi32(_mm_madd_epi16(m16[0], v), _mm_madd_epi16(m16[1], v)),
                        _mm_hadd_epi32(_mm_madd_epi16(m16[2], v), _mm_madd_epi16(m16[3], v)));
}

// 4 rows' dots of 16 int16 factors (m[i]) with 16 int16 sums (at s), as int32 (exact), row i in
// lane i: Q2_K's minima or Q3_K's scales times the sums of 16 activations.
static inline __m128i isum16x4(const __m256i (&m)[4], const int16_t* s) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s));
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(_mm256_madd_epi16(m[0], v), _mm256_madd_epi16(m[1], v)),
                                      _mm256_hadd_epi32(_mm256_madd_epi16(m[2], v), _mm256_madd_epi16(m[3], v)));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
// Q2_K's 16 minima (the high nibbles of its scales, the block's first 16 bytes) as int16.
static inline __m256i hi4x16(const uint8_t* b) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
  return _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)));
}
// 16 signed bytes as int16.
static inline __m256i s8x16(const int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// Q3_K's step factors for 4 rows: d, and 4d as the "d_min" of its offset term (exact: a power of two).
static inline DMin4 d4_times4(const float (&d)[4]) {
  const __m128 v = _mm_loadu_ps(d);
  return {v, _mm_mul_ps(v, _mm_set1_ps(4.0f))};
}

// One token's step for the 4 rows: sacc = fma(-dmin x float(isum), dx, sacc); returns the factors
// d x dx of the rows' int32 block sums.
static inline __m128 q4k_step4(const DMin4& dm, __m128i isum, float dx, __m128& sacc) {
  const __m128 vdx = _mm_set1_ps(dx);
  const __m128 term = _mm_mul_ps(_mm_xor_ps(dm.dmin, _mm_set1_ps(-0.0f)), _mm_cvtepi32_ps(isum));
  sacc = _mm_fmadd_ps(term, vdx, sacc);
  return _mm_mul_ps(dm.d, vdx);
}

// The part of the integer traits (avx2/qtraits.h, avx512/qtraits.h) that the 8-bit Q4_K tile's
// per-block step shares across both ISAs: Q derives from it and adds tab_scales and bcast_lane.
// In an anonymous namespace, like the functions above, so that each ISA's copy stays its own.
namespace {
struct Q4k8Step {
  using SM = __m128i;  // Q4_K's scales and minima as 16 bytes (q4k_scales_mins)
  using V4 = __m128;   // 4 rows, row i in lane i
  using DMin4 = x86::DMin4;
  static SM q4k_scales_mins(const uint8_t* p) { return x86::q4k_scales_mins(p); }
  static SM mins16(SM v) { return _mm_cvtepu8_epi16(_mm_srli_si128(v, 8)); }  // the minima as int16
  static DMin4 q4k_d_dmin4(const uint8_t* const (&b)[4]) { return x86::q4k_d_dmin4(b); }
  static __m128i mins_isum8x4(const SM (&m16)[4], const int16_t* s) { return x86::mins_isum8x4(m16, s); }
  // The Q2_K / Q3_K tile's term (x86::isum16x4): 16 int16 factors per row.
  using M16 = __m256i;
  static M16 hi4x16(const uint8_t* b) { return x86::hi4x16(b); }
  static M16 s8x16(const int8_t* p) { return x86::s8x16(p); }
  static DMin4 d4_times4(const float (&d)[4]) { return x86::d4_times4(d); }
  static __m128i isum16x4(const M16 (&m)[4], const int16_t* s) { return x86::isum16x4(m, s); }
  static V4 q4k_step4(const DMin4& dm, __m128i isum, float dx, V4& sacc) { return x86::q4k_step4(dm, isum, dx, sacc); }
  static V4 zero4() { return _mm_setzero_ps(); }
  static void store4(float* p, V4 v) { _mm_storeu_ps(p, v); }
};
}  // namespace

}  // namespace dsv3::kernels::x86
