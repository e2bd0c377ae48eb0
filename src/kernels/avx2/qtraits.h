// The AVX2 integer traits Q for simd/qblocks.h: a group of 32 int16 values in two ymm, VPMADDWD
// into 8 int32 lanes. Included only by avx2/kernels.cpp; the anonymous namespace keeps every
// inline function compiled with these flags out of other code.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/x86/qblocks_mins.h"

namespace dsv3::kernels::avx2 {
namespace {

struct Q : x86::Q4k8Step {
  struct I16 {
    __m256i lo, hi;  // values 0..15 and 16..31 as int16
  };
  using I32 = __m256i;  // 8 int32 lanes: lane l sums the products of values 2l, 2l + 1, 16 + 2l, 17 + 2l
  using F = __m256;
  static constexpr int kLanes = 8;
  // 2 x RB x NT accumulators + 2 + 2 registers for the weight and activation groups in 16 ymm.
  static constexpr int kTileTokens = 4;
  static constexpr int tile_rows(int tokens) { return tokens == 1 ? 4 : tokens == 2 ? 2 : 1; }

  static __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
  static I16 zx32(const uint8_t* p) { return {_mm256_cvtepu8_epi16(load128(p)), _mm256_cvtepu8_epi16(load128(p + 16))}; }
  static I16 sx32(const int8_t* p) { return {_mm256_cvtepi8_epi16(load128(p)), _mm256_cvtepi8_epi16(load128(p + 16))}; }
  static I16 zx16_twice(const uint8_t* p) {
    const __m256i v = _mm256_cvtepu8_epi16(load128(p));
    return {v, v};
  }
  static I16 load16(const int16_t* p) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16))};
  }
  static void store16(int16_t* p, I16 v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v.lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 16), v.hi);
  }
  static I16 srl(I16 v, int a, int b) { return {_mm256_srli_epi16(v.lo, a), _mm256_srli_epi16(v.hi, b)}; }
  static I16 sll(I16 v, int n) { return {_mm256_slli_epi16(v.lo, n), _mm256_slli_epi16(v.hi, n)}; }
  static I16 and_(I16 v, int16_t m) {
    const __m256i k = _mm256_set1_epi16(m);
    return {_mm256_and_si256(v.lo, k), _mm256_and_si256(v.hi, k)};
  }
  static I16 or_(I16 a, I16 b) { return {_mm256_or_si256(a.lo, b.lo), _mm256_or_si256(a.hi, b.hi)}; }
  static I16 sub(I16 v, int16_t k) {
    const __m256i s = _mm256_set1_epi16(k);
    return {_mm256_sub_epi16(v.lo, s), _mm256_sub_epi16(v.hi, s)};
  }
  // A block's sub-block scales as int16, 8 at a time, in both 128-bit lanes (the K-quants'
  // decode): mul_tab multiplies values 0..15 by t[a] and 16..31 by t[b] (low 16 bits of the
  // products: the callers' fit), each scale spread by one byte shuffle (a, b are constants once the decode loops are unrolled).
  using Tab = __m256i;
  static __m128i load64(const void* p) { return _mm_loadl_epi64(static_cast<const __m128i*>(p)); }
  static Tab tab_s8(const int8_t* p) { return _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(load64(p))); }
  static Tab tab_u8(const uint8_t* p) { return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(load64(p))); }
  static Tab tab_lo4(const uint8_t* p) { return _mm256_and_si256(tab_u8(p), _mm256_set1_epi16(15)); }
  static __m256i pick(Tab t, int a) { return _mm256_shuffle_epi8(t, _mm256_set1_epi16(int16_t(2 * a | (2 * a + 1) << 8))); }
  static I16 mul_tab(I16 v, Tab t, int a, int b) {
    return {_mm256_mullo_epi16(v.lo, pick(t, a)), _mm256_mullo_epi16(v.hi, pick(t, b))};
  }
  // Value j is v where bit j of `bits` is set, else 0: each 16-bit lane tests its own bit.
  static __m256i bits16(uint16_t bits, __m256i v) {
    const __m256i sel = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                                          int16_t(-32768));
    const __m256i b = _mm256_and_si256(_mm256_set1_epi16(int16_t(bits)), sel);
    return _mm256_and_si256(_mm256_cmpeq_epi16(b, sel), v);
  }
  static I16 bits(uint32_t bits, int16_t v) {
    const __m256i s = _mm256_set1_epi16(v);
    return {bits16(uint16_t(bits), s), bits16(uint16_t(bits >> 16), s)};
  }

  // 8-bit activations (Q4_K, kernels/block_activations.h): 32 columns per vector, VPMADDUBSW
  // (unsigned weights x signed activations into int16 pairs) then VPMADDWD by the sub-block's
  // scale, so lane l sums columns 4l..4l+3 of each 32.
  using U8 = __m256i;
  static constexpr int kU8Cols = 32;
  // Q4_K's 32 bytes at p as the 64 values of two sub-blocks, vector u < 64 / kU8Cols: the low
  // nibbles (sub-block 2j, u = 0), the high ones (2j + 1, u = 1).
  static U8 q4k_u8(const uint8_t* p, int u) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm256_and_si256(u == 0 ? v : _mm256_srli_epi16(v, 4), _mm256_set1_epi8(15));
  }
  // Q5_K's fifth bits (qh[32] at p) of the same 32 values as q4k_u8(qs + 32j, u): bit 2j + u of
  // qh[l], as 16 (to OR into the nibbles).
  static U8 q5k_hi(const uint8_t* p, int j, int u) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const int n = 4 - 2 * j - u;  // bit 2j + u moves to bit 4, within its byte
    return _mm256_and_si256(n >= 0 ? _mm256_slli_epi16(v, n) : _mm256_srli_epi16(v, -n), _mm256_set1_epi8(16));
  }
  static U8 or8(U8 a, U8 b) { return _mm256_or_si256(a, b); }
  // Q3_K's high bits (hmask[32] at p) of the 32 values of q2k_u8 for group g + u: bit g + u of
  // hmask[l], as 4 (to OR into the crumbs).
  static U8 q3k_hi(const uint8_t* p, int g, int u) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const int n = 2 - g - u;
    return _mm256_and_si256(n >= 0 ? _mm256_slli_epi16(v, n) : _mm256_srli_epi16(v, -n), _mm256_set1_epi8(4));
  }
  // Q2_K's 32 bytes at p (qs[32h..32h + 31]) as values 128h + 64k + 32u + l: crumb 2k + u.
  static U8 q2k_u8(const uint8_t* p, int k, int u) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const int n = 2 * (2 * k + u);
    return _mm256_and_si256(n == 0 ? v : _mm256_srli_epi16(v, n), _mm256_set1_epi8(3));
  }
  // The int16 factors of vector u of Q2_K's sub-blocks a..a + 3 of the table t: t[a + 2u] for its
  // first 16 columns (128-bit lane 0), t[a + 2u + 1] for the rest (t is in both lanes).
  static __m256i q2k_scale(Tab t, int a, int u) {
    const int lo = a + 2 * u, hi = lo + 1;
    const __m128i c0 = _mm_set1_epi16(int16_t(2 * lo | (2 * lo + 1) << 8)), c1 = _mm_set1_epi16(int16_t(2 * hi | (2 * hi + 1) << 8));
    return _mm256_shuffle_epi8(t, _mm256_set_m128i(c1, c0));
  }
  // The int16 factor of vector u of sub-blocks a, a + 1: t[a + u].
  static __m256i scale_u8(Tab t, int a, int u) { return pick(t, a + u); }
  static U8 load8(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static I32 dot8(U8 w, U8 x, __m256i scale) { return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), scale); }

  // The 8-bit Q4_K tile's per-block step (x86::Q4k8Step, x86/qblocks_mins.h): the scales as a
  // table; bcast_lane puts lane i of a 4-row vector in every lane.
  static Tab tab_scales(SM v) { return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(v)); }
  static F bcast_lane(__m128 v, int i) { return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_set1_epi32(i)); }

  static I32 zero32() { return _mm256_setzero_si256(); }
  static I32 dot(I16 w, I16 x) { return _mm256_add_epi32(_mm256_madd_epi16(w.lo, x.lo), _mm256_madd_epi16(w.hi, x.hi)); }
  static I32 add32(I32 a, I32 b) { return _mm256_add_epi32(a, b); }
  static I32 dot_acc(I32 a, I16 w, I16 x) { return add32(a, dot(w, x)); }  // AVX2 has no VPDPWSSD
  static I32 dot8_acc(I32 a, U8 w, U8 x, __m256i scale) { return add32(a, dot8(w, x, scale)); }
  static F cvt(I32 v) { return _mm256_cvtepi32_ps(v); }
  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static float reduce_add(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

  // The block GEMM (simd/qgemm.h). Register tile: 4 rows x 3 tokens, 12 int32 block sums + 3
  // activations (half a group each) + 1 weight in the 16 ymm, the 12 float accumulators in L1
  // (touched once per block). Measured against 3 x 2, 2 x 3, 2 x 2 (float accumulators in
  // registers too), 3 x 3 and 4 x 2: 4 x 3 was fastest or level for every format (docs/kernels.md).
  // Panels of 32 rows, passes of 1024 columns (a row group's 8 KiB of weights and a 6-token
  // tile's 12 KiB of activations in L1).
  static constexpr int kGemmTileRows = 4, kGemmTileTokens = 3, kGemmPanelRows = 32, kGemmPassCols = 1024;
  using R16 = __m256i;  // the int16 the GEMM loads at once: half a group (lo or hi of I16)
  static constexpr int kR16 = 16;
  static R16 load_r16(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static I32 madd(R16 w, R16 x) { return _mm256_madd_epi16(w, x); }
  // simd/qgemm.h: lane_order on 32 int16 at p: the even 32-bit pairs, then the odd ones
  // (SHUFPS picks them per 128-bit half, the 64-bit permute puts the halves in order).
  static void lane_order4L(int16_t* p) {
    const __m256 a = _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    const __m256 b = _mm256_loadu_ps(reinterpret_cast<const float*>(p + 16));
    const __m256i even = _mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88));  // a0 a2 b0 b2 | a4 a6 b4 b6
    const __m256i odd = _mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xdd));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_permute4x64_epi64(even, 0xd8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 16), _mm256_permute4x64_epi64(odd, 0xd8));
  }
  static F loadf(const float* p) { return _mm256_loadu_ps(p); }
  static void storef(float* p, F v) { _mm256_storeu_ps(p, v); }
  // Float operations the compiler may not contract into FMAs (GCC contracts C++ arithmetic on
  // vector types, which _mm256_mul_ps is written in; AVX2 has no rounding-mode builtins): the
  // empty asm makes the product opaque to it.
  static F mul_exact(F a, F b) {
    F p = _mm256_mul_ps(a, b);
    asm("" : "+x"(p));
    return p;
  }
  // Its operands are products made opaque, FMAs or sums: nothing for the compiler to contract.
  static F add_exact(F a, F b) { return _mm256_add_ps(a, b); }
  static void q3k_scales(const uint8_t* p, int8_t* out) { x86::q3k_scales(p, out); }

  // max |x[i]| over n (a multiple of 16) values; NaN if any is NaN.
  static float absmax(const float* x, int64_t n) {
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    int nan = 0;
    for (int64_t i = 0; i < n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      nan |= _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      m = _mm256_max_ps(m, _mm256_and_ps(v, abs));
    }
    if (nan) return __builtin_nanf("");
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
  }
  // xi[i] = round-to-nearest-even(x[i] x inv) for n (a multiple of 16) values, as int16 or int8
  // (T; |x[i] x inv| fits by the callers' inv), and the sum of each 16 into bsum16.
  template <class T>
  static void round(const float* x, int64_t n, float inv, T* xi, int32_t* bsum16) {
    const __m256 s = _mm256_set1_ps(inv);
    for (int64_t i = 0; i < n; i += 16) {
      const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), s));
      const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), s));
      // packs interleaves 128-bit halves (a0-3 b0-3 a4-7 b4-7); the permute restores the order
      const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8);
      if constexpr (sizeof(T) == 1)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(xi + i),
                         _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
      else
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(xi + i), w);
      const __m256i t = _mm256_add_epi32(a, b);
      __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
      u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4e));
      u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xb1));
      bsum16[i / 16] = _mm_cvtsi128_si32(u);
    }
  }
};

}  // namespace
}  // namespace dsv3::kernels::avx2
