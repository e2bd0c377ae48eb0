// The AVX-512 (F, BW) integer traits Q for simd/qblocks.h: a group of 32 int16 values in one
// zmm, VPMADDWD into 16 int32 lanes. Included only by avx512/kernels.cpp; the anonymous
// namespace keeps every inline function compiled with these flags out of other code.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "kernels/x86/qblocks_mins.h"

namespace dsv3::kernels::avx512 {
namespace {

struct Q : x86::Q4k8Step {
  using I16 = __m512i;  // values 0..31 of a group as int16
  using I32 = __m512i;  // 16 int32 lanes: lane l sums the products of values 2l and 2l + 1
  using F = __m512;
  static constexpr int kLanes = 16;
  // Register tiles of tile_rows(NT) rows x NT tokens: 2 x RB x NT accumulators (int32 per block,
  // float across blocks) + 1 weight group + 1 activation group in 32 zmm.
  static constexpr int kTileTokens = 4;
  static constexpr int tile_rows(int tokens) { return tokens <= 2 ? 4 : 2; }

  static __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static I16 zx32(const uint8_t* p) { return _mm512_cvtepu8_epi16(load256(p)); }
  static I16 sx32(const int8_t* p) { return _mm512_cvtepi8_epi16(load256(p)); }
  // The 16 bytes at p, zero-extended, as values 0..15 and again as 16..31.
  static I16 zx16_twice(const uint8_t* p) {
    return _mm512_cvtepu8_epi16(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static I16 load16(const int16_t* p) { return _mm512_loadu_si512(p); }
  static void store16(int16_t* p, I16 v) { _mm512_storeu_si512(p, v); }
  static I16 halves(int16_t a, int16_t b) {
    return _mm512_inserti64x4(_mm512_set1_epi16(a), _mm256_set1_epi16(b), 1);
  }
  // Values 0..15 shifted right by a, 16..31 by b.
  static I16 srl(I16 v, int a, int b) {
    return a == b ? _mm512_srli_epi16(v, unsigned(a)) : _mm512_srlv_epi16(v, halves(int16_t(a), int16_t(b)));
  }
  static I16 sll(I16 v, int n) { return _mm512_slli_epi16(v, unsigned(n)); }
  static I16 and_(I16 v, int16_t m) { return _mm512_and_si512(v, _mm512_set1_epi16(m)); }
  static I16 or_(I16 a, I16 b) { return _mm512_or_si512(a, b); }
  static I16 sub(I16 v, int16_t k) { return _mm512_sub_epi16(v, _mm512_set1_epi16(k)); }
  // A block's sub-block scales as int16, 8 at a time (the K-quants' decode): mul_tab multiplies
  // values 0..15 by t[a] and 16..31 by t[b] (low 16 bits of the products: the callers' fit)
  // with one permute for the factors (a, b are constants once the decode loops are unrolled),
  // where two broadcasts from scalar registers and an insert cost five uops.
  using Tab = __m128i;
  static __m128i load64(const void* p) { return _mm_loadl_epi64(static_cast<const __m128i*>(p)); }
  static Tab tab_s8(const int8_t* p) { return _mm_cvtepi8_epi16(load64(p)); }
  static Tab tab_u8(const uint8_t* p) { return _mm_cvtepu8_epi16(load64(p)); }
  static Tab tab_lo4(const uint8_t* p) { return _mm_and_si128(tab_u8(p), _mm_set1_epi16(15)); }
  static I16 mul_tab(I16 v, Tab t, int a, int b) {
    return _mm512_mullo_epi16(v, _mm512_permutexvar_epi16(halves(int16_t(a), int16_t(b)), _mm512_castsi128_si512(t)));
  }
  // Value j is v where bit j of `bits` is set, else 0.
  static I16 bits(uint32_t bits, int16_t v) { return _mm512_maskz_mov_epi16(__mmask32(bits), _mm512_set1_epi16(v)); }

  // 8-bit activations (Q4_K, kernels/block_activations.h): 64 columns per vector, VPMADDUBSW
  // (unsigned weights x signed activations into int16 pairs) then VPMADDWD by the sub-blocks'
  // scales, so lane l sums columns 4l..4l+3 of each 64.
  using U8 = __m512i;
  static constexpr int kU8Cols = 64;
  // Q4_K's 32 bytes at p as the 64 values of two sub-blocks, vector u < 64 / kU8Cols: the low
  // nibbles (sub-block 2j), then the high ones (2j + 1).
  static U8 q4k_u8(const uint8_t* p, int) {
    const __m512i v = _mm512_broadcast_i64x4(load256(p));
    return _mm512_and_si512(_mm512_mask_srli_epi16(v, __mmask32(0xffff0000u), v, 4), _mm512_set1_epi8(15));
  }
  // Q5_K's fifth bits (qh[32] at p) of the same 64 values as q4k_u8(qs + 32j): bit 2j of qh[l]
  // for the low nibbles, bit 2j + 1 for the high ones, as 16 (to OR into the nibbles).
  static U8 q5k_hi(const uint8_t* p, int j, int) {
    const __m512i v = _mm512_broadcast_i64x4(load256(p));
    const __m512i lo = shift8(v, 4 - 2 * j);
    return _mm512_and_si512(_mm512_mask_mov_epi16(lo, __mmask32(0xffff0000u), shift8(v, 3 - 2 * j)),
                            _mm512_set1_epi8(16));
  }
  // v's 16-bit lanes shifted left by n (right by -n); only bits that stay in their byte are used.
  static __m512i shift8(__m512i v, int n) {
    return n >= 0 ? _mm512_slli_epi16(v, unsigned(n)) : _mm512_srli_epi16(v, unsigned(-n));
  }
  static U8 or8(U8 a, U8 b) { return _mm512_or_si512(a, b); }
  // Q3_K's high bits (hmask[32] at p) of the 64 values of q2k_u8 for group g (g, g + 1 of its
  // two halves): bit g of hmask[l], then bit g + 1, as 4 (to OR into the crumbs).
  static U8 q3k_hi(const uint8_t* p, int g, int) {
    const __m512i v = _mm512_broadcast_i64x4(load256(p));
    return _mm512_and_si512(_mm512_mask_mov_epi16(shift8(v, 2 - g), __mmask32(0xffff0000u), shift8(v, 1 - g)),
                            _mm512_set1_epi8(4));
  }
  // Q2_K's 32 bytes at p (qs[32h..32h + 31]) as 64 values: crumb 2k of each byte, then crumb
  // 2k + 1 (k = 0, 1: values 128h + 64k..128h + 64k + 63).
  static U8 q2k_u8(const uint8_t* p, int k, int) {
    const __m512i v = _mm512_broadcast_i64x4(load256(p));
    const __m512i lo = k == 0 ? v : _mm512_srli_epi16(v, 4);
    return _mm512_and_si512(_mm512_mask_srli_epi16(lo, __mmask32(0xffff0000u), v, unsigned(4 * k + 2)),
                            _mm512_set1_epi8(3));
  }
  // The int16 factors of a vector of Q2_K's four sub-blocks a..a + 3 of the table t (16 columns,
  // 8 int16 products, each).
  static __m512i q2k_scale(Tab t, int a, int) {
    const __m512i quarter = _mm512_cvtepu8_epi16(_mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                                                  2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    return _mm512_permutexvar_epi16(_mm512_add_epi16(quarter, _mm512_set1_epi16(int16_t(a))), _mm512_castsi128_si512(t));
  }
  // The int16 factors of vector u of sub-blocks a, a + 1: t[a] for its first 32 columns, t[a + 1]
  // for the rest.
  static __m512i scale_u8(Tab t, int a, int) {
    return _mm512_permutexvar_epi16(halves(int16_t(a), int16_t(a + 1)), _mm512_castsi128_si512(t));
  }
  static U8 load8(const int8_t* p) { return _mm512_loadu_si512(p); }
  static I32 dot8(U8 w, U8 x, __m512i scale) { return _mm512_madd_epi16(_mm512_maddubs_epi16(w, x), scale); }
  static I32 dot8_acc(I32 a, U8 w, U8 x, __m512i scale) {  // a + dot8(w, x, scale), VPDPWSSD
    return _mm512_dpwssd_epi32(a, _mm512_maddubs_epi16(w, x), scale);
  }

  // The 8-bit Q4_K tile's per-block step (x86::Q4k8Step, x86/qblocks_mins.h): the scales as a
  // table; bcast_lane puts lane i of a 4-row vector in every lane.
  static Tab tab_scales(SM v) { return _mm_cvtepu8_epi16(v); }
  static F bcast_lane(__m128 v, int i) { return _mm512_permutexvar_ps(_mm512_set1_epi32(i), _mm512_castps128_ps512(v)); }

  static I32 zero32() { return _mm512_setzero_si512(); }
  static I32 dot(I16 w, I16 x) { return _mm512_madd_epi16(w, x); }
  // a + dot(w, x) in one instruction (VNNI's VPDPWSSD: the same int32 sums, wrapping alike).
  static I32 dot_acc(I32 a, I16 w, I16 x) { return _mm512_dpwssd_epi32(a, w, x); }
  static I32 add32(I32 a, I32 b) { return _mm512_add_epi32(a, b); }
  static F cvt(I32 v) { return _mm512_cvtepi32_ps(v); }
  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  // As avx512::V::reduce_add: halves added pairwise.
  static float reduce_add(F v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

  // The block GEMM (simd/qgemm.h). Register tile: 4 rows x 3 tokens, 12 int32 block sums + 12
  // float accumulators + 4 weights and 3 activations in 32 zmm; panels of 32 rows; passes of 1024
  // columns (a row group's 8 KiB of weights and a 12-token tile's 24 KiB of activations in L1).
  static constexpr int kGemmTileRows = 4, kGemmTileTokens = 3, kGemmPanelRows = 32, kGemmPassCols = 1024;
  using R16 = __m512i;  // the int16 the GEMM loads at once: a whole group
  static constexpr int kR16 = 32;
  static R16 load_r16(const int16_t* p) { return _mm512_loadu_si512(p); }
  // The GEMM's step is add32(acc, madd(w, x)). VNNI's VPDPWSSD, the same in one instruction,
  // ran slower there on this Zen 5 (docs/kernels.md).
  static I32 madd(R16 w, R16 x) { return _mm512_madd_epi16(w, x); }
  // simd/qgemm.h: lane_order on 64 int16 at p: the even 32-bit pairs, then the odd ones.
  static void lane_order4L(int16_t* p) {
    const __m512i a = _mm512_loadu_si512(p), b = _mm512_loadu_si512(p + 32);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    _mm512_storeu_si512(p, _mm512_permutex2var_epi32(a, even, b));
    _mm512_storeu_si512(p + 32, _mm512_permutex2var_epi32(a, odd, b));
  }
  static F loadf(const float* p) { return _mm512_loadu_ps(p); }
  static void storef(float* p, F v) { _mm512_storeu_ps(p, v); }
  // Float operations the compiler may not contract into FMAs (GCC contracts C++ arithmetic on
  // vector types, which _mm512_mul_ps and _mm512_add_ps are written in): the rounding-mode
  // builtins are opaque to it. _MM_FROUND_CUR_DIRECTION: plain VMULPS / VADDPS.
  static F mul_exact(F a, F b) { return _mm512_mul_round_ps(a, b, _MM_FROUND_CUR_DIRECTION); }
  static F add_exact(F a, F b) { return _mm512_add_round_ps(a, b, _MM_FROUND_CUR_DIRECTION); }
  static void q3k_scales(const uint8_t* p, int8_t* out) { x86::q3k_scales(p, out); }

  // max |x[i]| over n (a multiple of 16) values; NaN if any is NaN.
  static float absmax(const float* x, int64_t n) {
    __m512 m = _mm512_setzero_ps();
    __mmask16 nan = 0;
    for (int64_t i = 0; i < n; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + i);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      m = _mm512_max_ps(m, _mm512_abs_ps(v));
    }
    return nan ? __builtin_nanf("") : _mm512_reduce_max_ps(m);
  }
  // xi[i] = round-to-nearest-even(x[i] x inv) for n (a multiple of 16) values, as int16 or int8
  // (T; |x[i] x inv| fits by the callers' inv), and the sum of each 16 into bsum16.
  template <class T>
  static void round(const float* x, int64_t n, float inv, T* xi, int32_t* bsum16) {
    const __m512 s = _mm512_set1_ps(inv);
    for (int64_t i = 0; i < n; i += 16) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), s));
      if constexpr (sizeof(T) == 1)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(xi + i), _mm512_cvtsepi32_epi8(q));
      else
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(xi + i), _mm512_cvtsepi32_epi16(q));
      bsum16[i / 16] = _mm512_reduce_add_epi32(q);
    }
  }
};

}  // namespace
}  // namespace dsv3::kernels::avx512
