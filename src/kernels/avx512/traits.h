// The AVX-512 traits V the simd/ templates are instantiated with (F, BW, VL, DQ, VBMI, VNNI): 16
// float lanes, 32 registers, masked loads for every tail. Included only by translation units
// compiled with the AVX-512 flags (kernels.cpp, bf16dot.cpp); the anonymous namespace gives
// each its own copy, so no inline function compiled with these flags can be merged into code
// that runs without them.
#pragma once
#include <immintrin.h>

#include "kernels/variant.h"

namespace dsv3::kernels::avx512 {
namespace {

struct V {
  using Reg = __m512;
  static constexpr int kLanes = 16;
  // linear_rows: register tiles of up to kTileTokens tokens x tile_rows(tokens) rows, weights
  // decoded in registers: RB x NT accumulators + RB weight vectors + 1 activation + the FP8
  // decode's 2 constants within 32 zmm.
  // 4, not 8: from memory, 8 tokens as two row-chunked groups of 4 (the second group's weights
  // from L1/L2) beat one 3 x 8 tile (BF16 n = 8: 120 vs 100 GFLOP/s/core, FP8 105 vs 93, 2
  // threads), although the 3 x 8 tile is faster on weights already in L2 (docs/kernels.md).
  static constexpr int kTileTokens = 4;
  static constexpr int tile_rows(int tokens) { return tokens <= 5 ? 4 : 3; }
  // FP8 decode of 64 codes at once (load_fp8_group) for tiles of up to 2 tokens: RB x 4
  // weight vectors live.
  // Software prefetch lead (simd::prefetch_tile): the tile's memory is requested as one
  // sequential stream this far past its last row. `medium` decode, 2 threads, alternating
  // runs: 73-75 tok/s vs 69 with each row prefetched 2 KiB ahead in itself (48 GB/s period).
  static constexpr int kPrefetchBytes = 4096;
  static constexpr int kFp8Group = 4, kFp8GroupTokens = 2;
  static constexpr bool kFp8GroupPerRow = false;  // all RB rows' groups decoded, then FMA'd
  // linear_transposed_acc: 8 accumulators = 128 columns = one FP8 scale block.
  static constexpr int kPanel = 8;
  // linear_transposed_acc tiles: 8 tokens x 3 vectors (24 accumulators + 3 weights + 1
  // broadcast + the FP8 scale); then 4 tokens x 4 vectors, and 1-3 tokens x 8 vectors.
  static constexpr int kTransTokens = 8, kTransVectors = 3;
  static constexpr float kFp8Unit = 0x1p120f;  // load_fp8 returns the value x 2^-120
  // GEMM register tile: 2 vectors of rows (32) x 12 broadcast tokens = 24 accumulators + 2
  // weight vectors + 1 broadcast in 32 zmm. 24 independent FMA chains cover the FMA latency
  // (4 cycles) x 2 pipes several times over, and each step loads 128 B of weights for 24 FMAs.
  // Tokens from which linear takes the GEMM: below, the dot-product tile over 4 decoded rows
  // (simd/linear.h) was faster here (n = 16: 81 vs 87-107 GFLOP/s; n = 24: 103 vs 83-110).
  static constexpr int kGemmMinTokens = 24;
  // FP8 weights stay on the register tiles up to 63 tokens: the tile decodes each weight once
  // per 4 tokens but streams it straight from memory, the GEMM decodes a panel once and pays
  // for its packing, transposes and lane-tree merges. Kernel bench, 2 threads, tile vs GEMM
  // GFLOP/s (V3 `[2048, 7168]`, `[7168, 2048]` and medium's `[384, 2048]`, `[2048, 384]`,
  // `[2048, 2048]`): n = 24 395/421/378/329/416 vs 265/281/239/265/277, n = 48 385/429/412/345/411
  // vs 306/359/262/298/333, n = 64 395/411/391/318/396 vs 351/367/338/301/349, n = 96 390 vs
  // 366 (`[7168, 2048]`), tied at 128-512. `medium` batched decode (2 threads, alternating
  // runs): batch 24 264-284 vs 224-229 tok/s, 32 279-291 vs 250-271, 48 323-324 vs 303-304;
  // prefill of 512 tokens unchanged (346-366 vs 334-398). BF16 weights cross over near 48
  // (306/327 vs 296/331) and the avx512bf16 variant's GEMM is ahead from 48 on (610 vs 456),
  // so both keep 24.
  static constexpr int kGemmMinTokensFp8 = 64;
  static constexpr int kGemmRowRegs = 2, kGemmTokens = 12;

  static __mmask16 mask(int count) { return count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1); }
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float v) { return _mm512_set1_ps(v); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  // Halves added pairwise (lane i + lane i + 8, then + 4, + 2, + 1), spelled out rather than
  // left to _mm512_reduce_add_ps, whose order is the compiler's: simd/gemm.h repeats this
  // tree across registers and must get the same bits.
  static float reduce_add(Reg v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduce_max(Reg v) { return _mm512_reduce_max_ps(v); }
  static float sqrt_scalar(float v) { return _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(v))); }

  static Reg load_f32(const float* p, int count) {
    return count == 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask(count), p);
  }
  static Reg load_f32_fill(const float* p, int count, float fill) {
    return count == 16 ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mask(count), p);
  }
  static void store_f32(float* p, Reg v, int count) {
    if (count == 16)
      _mm512_storeu_ps(p, v);
    else
      _mm512_mask_storeu_ps(p, mask(count), v);
  }
  static __m256i load_u16(const void* p, int count) {
    return count == 16 ? _mm256_loadu_si256(static_cast<const __m256i*>(p)) : _mm256_maskz_loadu_epi16(mask(count), p);
  }
  static Reg load_bf16(const void* p, int count) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(load_u16(p, count)), 16));
  }
  static Reg load_f16(const void* p, int count) { return _mm512_cvtph_ps(load_u16(p, count)); }
  // FP8 e4m3 s.eeee.mmm -> float32 bits s.000eeee.mmm0...0: the float32 is exactly the FP8
  // value x 2^-120 (bias 127 vs 7), FP8 subnormals landing on float32 subnormals, so the scale
  // carries 2^120 (kFp8Unit). A byte permute (VBMI) puts code k at the top of dword k, zeros
  // elsewhere; an arithmetic shift right by 4 places sign, exponent and mantissa, and the AND
  // clears the sign's copies: three ops per 16 weights (the zero-extend + shift-left way took
  // four). Needs the CPU's default denormal handling (no DAZ). Code 0x7f (NaN) decodes to
  // 480, finite: checkpoints hold no NaN. (Through f16 and vcvtph2ps was 1.35x slower.)
  static __m512i fp8_mask() { return _mm512_set1_epi32(int(0x87f00000u)); }
  static Reg load_fp8(const void* p, int count) {
    const __m128i b = count == 16 ? _mm_loadu_si128(static_cast<const __m128i*>(p)) : _mm_maskz_loadu_epi8(mask(count), p);
    const __m512i idx = _mm512_setr_epi32(0 << 24, 1 << 24, 2 << 24, 3 << 24, 4 << 24, 5 << 24, 6 << 24, 7 << 24, 8 << 24,
                                          9 << 24, 10 << 24, 11 << 24, 12 << 24, 13 << 24, 14 << 24, 15 << 24);
    const __m512i h = _mm512_maskz_permutexvar_epi8(__mmask64(0x8888888888888888ull), idx, _mm512_castsi128_si512(b));
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(h, 4), fp8_mask()));
  }
  // 64 codes (count <= 64, zeros past it) -> out[q] = columns 16q .. 16q + 15, each exactly as
  // load_fp8 decodes them, in 10 ops instead of 12. One permute makes dword k hold codes k,
  // 16 + k, 32 + k, 48 + k (low byte to high); per 16-bit half, an arithmetic shift right by 4
  // decodes the high byte into the top of that half (codes 16 + k and 48 + k), and after a
  // 16-bit shift left by 8 the low byte (codes k and 32 + k); a 32-bit shift left by 16 moves
  // a low half's result to the top; the AND clears sign copies and neighbours' bits.
  static void load_fp8_group(const void* p, int count, Reg (&out)[4]) {
    const __m512i idx = _mm512_setr_epi32(0x30201000, 0x31211101, 0x32221202, 0x33231303, 0x34241404, 0x35251505,
                                          0x36261606, 0x37271707, 0x38281808, 0x39291909, 0x3a2a1a0a, 0x3b2b1b0b,
                                          0x3c2c1c0c, 0x3d2d1d0d, 0x3e2e1e0e, 0x3f2f1f0f);
    load_fp8_group(p, count, idx, out);
  }
  // The same decode, with `idx` choosing the codes: byte q of dword k of idx names the code out[q]
  // lane k gets (avx512bf16's FMA path takes the even and odd columns apart with it).
  static void load_fp8_group(const void* p, int count, __m512i idx, Reg (&out)[4]) {
    const __m512i b = count >= 64 ? _mm512_loadu_si512(p)
                                  : _mm512_maskz_loadu_epi8(count >= 64 ? ~__mmask64(0) : (__mmask64(1) << count) - 1, p);
    const __m512i m = fp8_mask(), v = _mm512_permutexvar_epi8(idx, b);
    const __m512i hi = _mm512_srai_epi16(v, 4), lo = _mm512_srai_epi16(_mm512_slli_epi16(v, 8), 4);
    out[0] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(lo, 16), m));
    out[1] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(hi, 16), m));
    out[2] = _mm512_castsi512_ps(_mm512_and_si512(lo, m));
    out[3] = _mm512_castsi512_ps(_mm512_and_si512(hi, m));
  }
  // exp with Cephes' expf polynomial (about 1 ulp); 0 below log(FLT_MIN), -inf included.
  static Reg exp(Reg x) {
    const Reg lo = set1(-87.33654475f);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), set1(88.3f));
    const Reg fx = _mm512_roundscale_ps(mul(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm512_fnmadd_ps(fx, set1(0.693359375f), x);
    r = _mm512_fnmadd_ps(fx, set1(-2.12194440e-4f), r);
    Reg p = set1(1.9875691500e-4f);
    p = fma(p, r, set1(1.3981999507e-3f));
    p = fma(p, r, set1(8.3334519073e-3f));
    p = fma(p, r, set1(4.1665795894e-2f));
    p = fma(p, r, set1(1.6666665459e-1f));
    p = fma(p, r, set1(5.0000001201e-1f));
    p = fma(p, mul(r, r), add(r, set1(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mov_ps(__mmask16(~under), mul(p, _mm512_castsi512_ps(e)));
  }
  // v[i] lane k <- v[k] lane i (16 x 16 floats): unpack pairs, then pairs of pairs, then
  // 128-bit quarters twice.
  static void transpose(Reg (&v)[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {  // u[4i + k], quarter q: rows 4i..4i+3 of column 4q + k
      const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
      v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int k = 0; k < 4; ++k) {
      const __m512 ab_lo = _mm512_shuffle_f32x4(v[k], v[4 + k], 0x44), ab_hi = _mm512_shuffle_f32x4(v[k], v[4 + k], 0xee);
      const __m512 cd_lo = _mm512_shuffle_f32x4(v[8 + k], v[12 + k], 0x44), cd_hi = _mm512_shuffle_f32x4(v[8 + k], v[12 + k], 0xee);
      t[k] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
      t[4 + k] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xdd);
      t[8 + k] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
      t[12 + k] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xdd);
    }
    for (int i = 0; i < 16; ++i) v[i] = t[i];
  }
  [[noreturn]] static void unsupported(DType d) { unsupported_dtype(d); }
};

}  // namespace
}  // namespace dsv3::kernels::avx512
