// The AVX2 kernel variant (AVX2 + FMA + F16C; compiled with those flags and reached only after
// dispatch.cpp saw them in cpuid): 8 float lanes, 16 registers. Tails go through small
// zero-padded copies (bytes, halves) or vmaskmov (floats), which never touch memory past the end.
#include <immintrin.h>

#include "kernels/avx2/qtraits.h"
#include "kernels/scalar/scalar.h"
#include "kernels/simd/elementwise.h"
#include "kernels/simd/gemm.h"
#include "kernels/simd/linear.h"
#include "kernels/simd/matmul.h"
#include "kernels/simd/qblocks.h"
#include "kernels/simd/variant_gemm.h"
#include "kernels/variant.h"

namespace dsv3::kernels::avx2 {
namespace {

struct V {
  using Reg = __m256;
  static constexpr int kLanes = 8;
  // linear_rows: register tiles of up to kTileTokens tokens x tile_rows(tokens) rows: RB x NT
  // accumulators + RB weight vectors + 1 activation + the FP8 mask within 16 ymm.
  static constexpr int kTileTokens = 4;
  static constexpr int tile_rows(int tokens) { return tokens <= 2 ? 4 : tokens == 3 ? 3 : 2; }
  // As AVX-512 (avx512/traits.h). With no prefetch, `medium` decode with these kernels (2
  // threads) ran at 44-48 tok/s.
  static constexpr int kPrefetchBytes = 4096;
  // FP8 one-token tiles decode 32 codes at once (load_fp8_group), one row at a time
  // (kFp8GroupPerRow: 4 decoded vectors live, not RB x 4).
  static constexpr int kFp8Group = 4, kFp8GroupTokens = 2;
  static constexpr bool kFp8GroupPerRow = true;
  // linear_transposed_acc: 8 accumulators = 64 columns.
  static constexpr int kPanel = 8;
  // linear_transposed_acc tiles: 2 tokens x 4 vectors (8 accumulators); 1 token x 8 vectors.
  static constexpr int kTransTokens = 2, kTransVectors = 4;
  static constexpr float kFp8Unit = 0x1p120f;  // load_fp8 returns the value x 2^-120
  // GEMM register tile: 2 vectors of rows (16) x 6 broadcast tokens = 12 accumulators + 2
  // weight vectors + 1 broadcast in 16 ymm.
  // Tokens from which linear takes the GEMM (at n = 8 it matched the dot-product tile here,
  // at n = 16 it was 1.5x faster).
  static constexpr int kGemmMinTokens = 8;
  static constexpr int kGemmRowRegs = 2, kGemmTokens = 6;

  static __m256i mask(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float v) { return _mm256_set1_ps(v); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static float reduce_add(Reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduce_max(Reg v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float sqrt_scalar(float v) { return _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(v))); }

  static Reg load_f32(const float* p, int count) {
    return count == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(count));
  }
  static Reg load_f32_fill(const float* p, int count, float fill) {
    if (count == 8) return _mm256_loadu_ps(p);
    const __m256i m = mask(count);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_f32(float* p, Reg v, int count) {
    if (count == 8)
      _mm256_storeu_ps(p, v);
    else
      _mm256_maskstore_ps(p, mask(count), v);
  }
  static __m128i load_bytes(const void* p, int bytes, int count_bytes) {  // bytes = 8 or 16
    if (count_bytes == bytes)
      return bytes == 16 ? _mm_loadu_si128(static_cast<const __m128i*>(p)) : _mm_loadl_epi64(static_cast<const __m128i*>(p));
    alignas(16) unsigned char buf[16] = {};
    __builtin_memcpy(buf, p, size_t(count_bytes));
    return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
  }
  static Reg load_bf16(const void* p, int count) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load_bytes(p, 16, 2 * count)), 16));
  }
  static Reg load_f16(const void* p, int count) { return _mm256_cvtph_ps(load_bytes(p, 16, 2 * count)); }
  // FP8 e4m3 -> float32 bits in place (see avx512/kernels.cpp): value x 2^-120.
  static Reg load_fp8(const void* p, int count) {
    __m256i h = _mm256_slli_epi32(_mm256_cvtepu8_epi32(load_bytes(p, 8, count)), 24);
    h = _mm256_and_si256(_mm256_srai_epi32(h, 4), _mm256_set1_epi32(int(0x87f00000u)));
    return _mm256_castsi256_ps(h);
  }
  // 32 codes (count <= 32, zeros past it) -> out[q] = columns 8q .. 8q + 7, each exactly as
  // load_fp8 decodes them, in 11 ops where four load_fp8 take 16. A cross-lane dword permute
  // puts codes 0-3, 8-11, 16-19, 24-27 in the low lane and the rest in the high one; an in-lane
  // byte shuffle makes dword l of each lane hold codes 8q + l (low lane) or 8q + 4 + l (high
  // lane) in byte q; then AVX-512's shifts (avx512/traits.h, load_fp8_group) decode byte q into
  // out[q].
  static void load_fp8_group(const void* p, int count, Reg (&out)[4]) {
    __m256i b;
    if (count >= 32) {
      b = _mm256_loadu_si256(static_cast<const __m256i*>(p));
    } else {
      alignas(32) unsigned char buf[32] = {};
      __builtin_memcpy(buf, p, size_t(count));
      b = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
    }
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    const __m256i idx = _mm256_setr_epi32(0x0c080400, 0x0d090501, 0x0e0a0602, 0x0f0b0703, 0x0c080400, 0x0d090501,
                                          0x0e0a0602, 0x0f0b0703);
    const __m256i m = _mm256_set1_epi32(int(0x87f00000u)), v = _mm256_shuffle_epi8(b, idx);
    const __m256i hi = _mm256_srai_epi16(v, 4), lo = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 4);
    out[0] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(lo, 16), m));
    out[1] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(hi, 16), m));
    out[2] = _mm256_castsi256_ps(_mm256_and_si256(lo, m));
    out[3] = _mm256_castsi256_ps(_mm256_and_si256(hi, m));
  }
  // exp with Cephes' expf polynomial (about 1 ulp); 0 below log(FLT_MIN), -inf included.
  static Reg exp(Reg x) {
    const Reg lo = set1(-87.33654475f);
    const Reg under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), set1(88.3f));
    const Reg fx = _mm256_round_ps(mul(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm256_fnmadd_ps(fx, set1(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, set1(-2.12194440e-4f), r);
    Reg p = set1(1.9875691500e-4f);
    p = fma(p, r, set1(1.3981999507e-3f));
    p = fma(p, r, set1(8.3334519073e-3f));
    p = fma(p, r, set1(4.1665795894e-2f));
    p = fma(p, r, set1(1.6666665459e-1f));
    p = fma(p, r, set1(5.0000001201e-1f));
    p = fma(p, mul(r, r), add(r, set1(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, mul(p, _mm256_castsi256_ps(e)));
  }
  // v[i] lane k <- v[k] lane i (8 x 8 floats).
  static void transpose(Reg (&v)[8]) {
    __m256 t[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {  // v[4i + k], half q: rows 4i..4i+3 of column 4q + k
      v[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      v[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
      v[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      v[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int k = 0; k < 4; ++k) {
      t[k] = _mm256_permute2f128_ps(v[k], v[4 + k], 0x20);
      t[4 + k] = _mm256_permute2f128_ps(v[k], v[4 + k], 0x31);
    }
    for (int i = 0; i < 8; ++i) v[i] = t[i];
  }
  [[noreturn]] static void unsupported(DType d) { unsupported_dtype(d); }
};

const Gemm kGemm = simd::BlockOrFloatGemm<V, Q>::make(V::kGemmMinTokens);

// ggml block formats go to simd/qblocks.h (int16 activations), the rest to simd/linear.h.
void linear_rows(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float* scratch) {
  if (simd::qblocks::supported(w.dtype)) return simd::qblocks::linear_rows<Q>(w, x, y, n, r0, r1);
  simd::linear_rows<V>(w, x, y, n, r0, r1, scratch);
}

}  // namespace

const Variant& variant() {
  static const Variant v{
      "avx2",
      linear_rows,
      simd::linear_transposed_acc<V>,
      simd::dequant_row_range_any<V>,
      simd::rmsnorm<V>,
      scalar::rope_interleaved,  // 64 values per head: not worth a vector version
      simd::softmax<V>,
      simd::softmax_partial<V>,
      simd::silu_mul<V>,
      simd::dot<V>,
      simd::axpy<V>,
      simd::matmul<V>,
      &kGemm,
  };
  return v;
}

}  // namespace dsv3::kernels::avx2
