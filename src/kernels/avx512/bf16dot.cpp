// The avx512bf16 kernel variant: the avx512 variant, except that BF16 and FP8 weights are
// multiplied with AVX-512 BF16's dot-product instruction, VDPBF16PS, which does 32 products per
// instruction where an FMA does 16, on activations rounded to BF16. DeepSeek's own inference
// code runs its linears on BF16 activations too (model.py's default gemm_impl dequantizes FP8
// weights to BF16 and multiplies in BF16); llama.cpp does the same on CPUs with this
// instruction. F32 and F16 weights, views marked Matrix::f32_activations, the transposed products
// and every elementwise op keep the avx512 variant's float32 code.
//
// What is computed is written down as plain loops in scalar/bf16dot.cpp (the twin this code
// matches bit for bit); in short: x' = bf16(x * block scale), lane l of a 32-column vector v
// accumulates the pair of columns 32v + 2l, 32v + 2l + 1 in VDPBF16PS's order, lanes summed by
// the reduce_add tree. FP8 codes become BF16 through two 128-entry byte lookups (VBMI's
// two-register byte permute): the exact value of every code, subnormals included (a shift would
// turn FP8 subnormals into BF16 subnormals, which VDPBF16PS reads as zero).
//
// As in the float32 variant, the one-token kernel (register tiles of up to 4 tokens) and the
// many-token GEMM give every (row, token) the same bits: the GEMM runs the same 16 lane chains
// as 16 lane GEMMs over pairs of columns (simd/gemm.h explains the scheme for floats).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "kernels/avx512/traits.h"
#include "kernels/scalar/scalar.h"
#include "kernels/simd/gemm.h"
#include "kernels/simd/linear.h"
#include "kernels/variant.h"

namespace dsv3::kernels::avx512 {
namespace {

constexpr int L = V::kLanes;           // float32 lanes: pairs of columns per BF16 vector
constexpr int kVecCols = 2 * L;        // columns per BF16 vector
constexpr int kStepCols = 2 * kVecCols;  // columns per step: one FP8 lookup of 64 codes

__mmask64 mask64(int count) { return count >= 64 ? ~__mmask64(0) : (__mmask64(1) << count) - 1; }
__mmask32 mask32(int count) { return count >= 32 ? ~__mmask32(0) : (__mmask32(1) << count) - 1; }

__m512 dp(__m512 acc, __m512i w, __m512i x) { return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x); }

// 32 floats (lo = columns 0..15, hi = 16..31) -> 32 BF16 in column order.
__m512i to_bf16(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

// FP8 code -> BF16 lookup: the low and high byte of the BF16 of each code's magnitude (128
// entries, two registers each), the sign bit, and the byte interleaves that turn (low bytes,
// high bytes) of 64 codes into two vectors of 32 BF16 in column order.
struct Fp8Tables {
  alignas(64) uint8_t lo[128], hi[128], il_a[64], il_b[64];
  Fp8Tables() {
    for (int m = 0; m < 128; ++m) {
      const float v = fp8e4m3_to_f32(uint8_t(m));  // exact in BF16: at most 4 significant bits
      uint32_t b;
      std::memcpy(&b, &v, sizeof b);
      lo[m] = uint8_t(b >> 16);
      hi[m] = uint8_t(b >> 24);
    }
    for (int k = 0; k < 32; ++k) {
      il_a[2 * k] = uint8_t(k), il_a[2 * k + 1] = uint8_t(64 + k);
      il_b[2 * k] = uint8_t(32 + k), il_b[2 * k + 1] = uint8_t(96 + k);
    }
  }
};

struct Fp8Decoder {
  __m512i lo_a, lo_b, hi_a, hi_b, sign, il_a, il_b;
  Fp8Decoder() {
    static const Fp8Tables t;
    lo_a = _mm512_load_si512(t.lo), lo_b = _mm512_load_si512(t.lo + 64);
    hi_a = _mm512_load_si512(t.hi), hi_b = _mm512_load_si512(t.hi + 64);
    sign = _mm512_set1_epi8(char(0x80));
    il_a = _mm512_load_si512(t.il_a), il_b = _mm512_load_si512(t.il_b);
  }
  // 64 codes (zeros past count) -> a = columns 0..31, b = 32..63 as BF16: five ops.
  void decode(const uint8_t* p, int count, __m512i& a, __m512i& b) const {
    const __m512i codes = count >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(mask64(count), p);
    const __m512i l = _mm512_permutex2var_epi8(lo_a, codes, lo_b);  // index bit 7 (the sign) ignored
    const __m512i h = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(hi_a, codes, hi_b), codes, sign, 0xf8);
    a = _mm512_permutex2var_epi8(l, il_a, h);
    b = _mm512_permutex2var_epi8(l, il_b, h);
  }
};

// Columns [c, c + cnt) (cnt <= 64) of a row as two BF16 vectors (zeros past cnt).
template <DType D>
inline void load_step(const Fp8Decoder& dec, const uint8_t* row, int64_t c, int cnt, __m512i& a, __m512i& b) {
  if constexpr (D == DType::F8_E4M3) {
    dec.decode(row + c, cnt, a, b);
  } else {
    const uint8_t* p = row + 2 * c;
    a = cnt >= kVecCols ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi16(mask32(cnt), p);
    b = cnt >= kStepCols ? _mm512_loadu_si512(p + 64)
                         : cnt > kVecCols ? _mm512_maskz_loadu_epi16(mask32(cnt - kVecCols), p + 64)
                                          : _mm512_setzero_si512();
  }
}

// Whether the vector code computes `w` (else the scalar twin does): BF16, or FP8 whose scales
// keep x * scale finite for any activation a model produces (|scale| < 2^64).
// Whether this variant multiplies `w` with BF16 activations: BF16 and FP8 weights, unless the view
// asks for float32 ones (Matrix::f32_activations); everything else is the avx512 variant's.
bool is_bf16_path(const Matrix& w) {
  return (w.dtype == DType::BF16 || w.dtype == DType::F8_E4M3) && !w.f32_activations;
}

bool bf16_supported(const Matrix& w) {
  return w.dtype == DType::BF16 || (w.dtype == DType::F8_E4M3 && simd::fp8_scales_below(w, 0x1p64f));
}

// ---- One-token kernel: register tiles over rows x tokens --------------------------------------

// fn(j, t, b) for every 32-column vector j and token t < nt of x [.., cols] (rows ldx apart):
// b = x[t][32j .. 32j + 31] times f (null: 1), rounded to BF16, in column order (zeros past cols).
template <class Fn>
void for_each_bf16_vector(const float* f, const float* x, int64_t ldx, int nt, int64_t cols, const Fn& fn) {
  for (int64_t j = 0; j * kVecCols < cols; ++j) {
    const int64_t c = j * kVecCols;
    const int n0 = cols - c < L ? int(cols - c) : L, n1 = cols - c - L < L ? int(cols - c - L) : L;
    for (int t = 0; t < nt; ++t) {
      const float* xt = x + t * ldx + c;
      __m512 lo = V::load_f32(xt, n0), hi = n1 > 0 ? V::load_f32(xt + L, n1) : V::zero();
      if (f != nullptr) lo = V::mul(lo, V::load_f32(f + c, L)), hi = V::mul(hi, V::load_f32(f + c + L, L));
      fn(j, t, to_bf16(lo, hi));
    }
  }
}

// Tokens [0, nt) of x times f as BF16, [ceil(cols / 32)][nt][32 BF16]: a tile's activations for
// one vector of columns contiguous.
void pack_x_bf16(const float* f, const float* x, int64_t ldx, int nt, int64_t cols, uint16_t* xp) {
  for_each_bf16_vector(f, x, ldx, nt, cols,
                       [&](int64_t j, int t, __m512i b) { _mm512_storeu_si512(xp + (j * nt + t) * kVecCols, b); });
}
int64_t packed_bf16(int nt, int64_t cols) { return (cols + kVecCols - 1) / kVecCols * kVecCols * nt; }

// y[t * ldy + i] = sum_c W[r + i, c] x'[t, c] for i < RB, t < NT (rows: row r's data, xp: the NT
// tokens from pack_x_bf16). Each accumulator sees the same VDPBF16PS sequence whatever RB, NT.
template <DType D, int RB, int NT>
void tile(const Matrix& w, const uint8_t* rows, const uint16_t* xp, float* y, int64_t ldy) {
  const Fp8Decoder dec;
  const int64_t cols = w.cols, row_bytes = cols * simd::elem_bytes<D>();
  __m512 acc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = V::zero();
  // A row's two weight vectors are used by all NT tokens before the next row is decoded (the
  // activations come again from L1): RB x NT accumulators, 2 weights, 1 activation and the
  // decoder's 7 constants stay within 32 registers for RB = NT = 4.
  auto step = [&](int64_t c, int cnt) __attribute__((always_inline)) {
    const uint16_t* xc = xp + (c / kVecCols) * NT * kVecCols;
    for (int i = 0; i < RB; ++i) {
      simd::prefetch_tile<RB>(rows, i, row_bytes, c * simd::elem_bytes<D>(), kStepCols * simd::elem_bytes<D>(),
                               V::kPrefetchBytes);
      __m512i wa, wb;
      load_step<D>(dec, rows + i * row_bytes, c, cnt, wa, wb);
      for (int t = 0; t < NT; ++t) acc[i][t] = dp(acc[i][t], wa, _mm512_loadu_si512(xc + t * kVecCols));
      if (cnt > kVecCols)
        for (int t = 0; t < NT; ++t) acc[i][t] = dp(acc[i][t], wb, _mm512_loadu_si512(xc + (NT + t) * kVecCols));
    }
  };
  int64_t c = 0;
  for (; c + kStepCols <= cols; c += kStepCols) step(c, kStepCols);
  if (c < cols) step(c, int(cols - c));
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) y[t * ldy + i] = V::reduce_add(acc[i][t]);
}

constexpr int kTileTokens = 4;
constexpr int tile_rows(int) { return 4; }

template <DType D, int NT>
void tile_rows_n(const Matrix& w, int64_t r0, int64_t r1, const uint16_t* xp, float* y) {
  constexpr int RB = tile_rows(NT);
  const int64_t row_bytes = w.cols * simd::elem_bytes<D>();
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  int64_t r = r0;
  for (; r + RB <= r1; r += RB) tile<D, RB, NT>(w, data + size_t(r) * size_t(row_bytes), xp, y + r, w.rows);
  for (; r < r1; ++r) tile<D, 1, NT>(w, data + size_t(r) * size_t(row_bytes), xp, y + r, w.rows);
}

template <DType D, int NT>
void tile_rows_any(int nt, const Matrix& w, int64_t r0, int64_t r1, const uint16_t* xp, float* y) {
  if constexpr (NT > 1)
    if (nt < NT) return tile_rows_any<D, NT - 1>(nt, w, r0, r1, xp, y);
  tile_rows_n<D, NT>(w, r0, r1, xp, y);
}

// Rows [r0, r1) of y = W x for n tokens: simd::linear_rows_typed's blocking, with the
// activations packed as BF16 (for FP8 once per scale block of rows, times its scales).
template <DType D>
void linear_rows_typed(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1) {
  simd::linear_rows_blocked<kTileTokens, uint16_t>(w, x, y, n, r0, r1, 1.0f, kVecCols, packed_bf16, pack_x_bf16,
                                                   [&](int nt, int64_t rc, int64_t rce, const uint16_t* xp, float* yt) {
                                                     tile_rows_any<D, kTileTokens>(nt, w, rc, rce, xp, yt);
                                                   });
}

// ---- FP8 weights through float32 FMAs, with VDPBF16PS's bits -----------------------------------
//
// Every product VDPBF16PS forms here is exact in float32 (an FP8 code's 4 significant bits times
// a BF16's 8), and it adds each to the accumulator with one rounding to float32, flushing a
// subnormal sum to zero. An FMA of the same exact product rounds the same sum the same way, and
// MXCSR's flush-to-zero flushes it the same way. So lane l's chain over the pairs c = 32v + 2l,
// (acc + w[c + 1] x'[c + 1]) + w[c] x'[c], is two FMAs per vector v, one on the odd columns and
// one on the even ones, and gives the VDPBF16PS tile's bits exactly, reduce_add tree included.
//
// Why: on Sapphire/Emerald Rapids VDPBF16PS does 32 multiply-adds per ~2 cycles where the two
// FMA pipes do 32 per cycle, and the byte permutes of the FP8 -> BF16 lookup (VPERMI2B) run one
// per ~1.7 cycles, so the lookup tile decodes FP8 at ~13-14 G weights/s per core from L2, about
// what a core reads from memory. Decoding 64 codes to float32 takes one VPERMB and shifts (V's
// group decode, with an index that puts the even and the odd columns of each 32 in their own
// vector): 16-18 G weights/s there. Where VDPBF16PS and VPERMI2B run at full rate (Zen 4/5:
// not measured here) the lookup tile should be the faster one, so fp8_dot() picks per CPU by
// timing both (the bits are the same either way).
//
// The weights decode to value x 2^-120 (V::load_fp8_group); the activations are packed as
// x'' = bf16(x * scale) x 2^120, so every product is w x' itself. The packing checks every x'
// against the path's range (pack_x_pairs); if one is outside it (in practice never: |x'| would
// have to reach 2^8 or fall below 2^-117), the lookup tile computes the rows again.

// Per 32 columns, per token: the odd columns' x'' (16 floats), then the even ones'. Returns
// whether every x' lets the FMA path give the lookup tile's bits (its BF16 exponent e, for
// nonzero x', in [10, 134]):
//  - |x'| < 2^8, so x'' = x' x 2^120 is finite (NaN and infinities fail here);
//  - |x'| >= 2^-117, so no product with an FP8 weight (the smallest subnormal is 2^-9) is a
//    float32 subnormal, which VDPBF16PS would round (and flush) before adding where the FMA
//    adds it exactly.
bool pack_x_pairs(const float* f, const float* x, int64_t ldx, int nt, int64_t cols, float* xp) {
  const __m512 unit = V::set1(0x1p120f);
  const __m512i hi16 = _mm512_set1_epi32(int(0xffff0000u)), exp_mask = _mm512_set1_epi16(0xff),
                one = _mm512_set1_epi16(1), below = _mm512_set1_epi16(10 - 1), above = _mm512_set1_epi16(135);
  __mmask32 bad = 0;
  for_each_bf16_vector(f, x, ldx, nt, cols, [&](int64_t j, int t, __m512i b) {  // dword k: columns 2k, 2k + 1
    const __m512i e = _mm512_and_si512(_mm512_srli_epi16(b, 7), exp_mask);
    bad |= _mm512_cmplt_epu16_mask(_mm512_sub_epi16(e, one), below) | _mm512_cmpge_epu16_mask(e, above);
    float* out = xp + (j * nt + t) * kVecCols;
    _mm512_storeu_ps(out, V::mul(_mm512_castsi512_ps(_mm512_and_si512(b, hi16)), unit));
    _mm512_storeu_ps(out + L, V::mul(_mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), unit));
  });
  return bad == 0;
}
int64_t packed_pairs(int nt, int64_t cols) { return (cols + kVecCols - 1) / kVecCols * kVecCols * nt; }

// MXCSR's flush-to-zero on (and denormals-are-zero off: the decoded FP8 subnormals are float32
// subnormals) for the scope.
class FlushToZero {
 public:
  FlushToZero() : saved_(_mm_getcsr()) { _mm_setcsr((saved_ | 0x8000u) & ~0x0040u); }
  ~FlushToZero() { _mm_setcsr(saved_); }
  FlushToZero(const FlushToZero&) = delete;
  FlushToZero& operator=(const FlushToZero&) = delete;

 private:
  unsigned saved_;
};

// The FMA tile: RB rows x NT tokens, as tile<F8_E4M3, RB, NT> computes them.
template <int RB, int NT>
void fma_tile(const Matrix& w, const uint8_t* rows, const float* xp, float* y, int64_t ldy) {
  // Dword k: codes 2k, 2k + 1, 32 + 2k, 33 + 2k, so out = {even, odd} columns of each 32.
  const __m512i idx = _mm512_setr_epi32(0x21200100, 0x23220302, 0x25240504, 0x27260706, 0x29280908, 0x2b2a0b0a,
                                        0x2d2c0d0c, 0x2f2e0f0e, 0x31301110, 0x33321312, 0x35341514, 0x37361716,
                                        0x39381918, 0x3b3a1b1a, 0x3d3c1d1c, 0x3f3e1f1e);
  const int64_t cols = w.cols, row_bytes = cols;
  __m512 acc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = V::zero();
  auto step = [&](int64_t c, int cnt) __attribute__((always_inline)) {
    __m512 wv[RB][4];
    for (int i = 0; i < RB; ++i) {
      simd::prefetch_tile<RB>(rows, i, row_bytes, c, kStepCols, V::kPrefetchBytes);
      V::load_fp8_group(rows + i * row_bytes + c, cnt, idx, wv[i]);
    }
    const float* xc = xp + (c / kVecCols) * NT * kVecCols;
    for (int v = 0; v < 2; ++v) {
      if (v == 1 && cnt <= kVecCols) break;  // as the lookup tile: no second VDPBF16PS
      for (int t = 0; t < NT; ++t) {
        const float* xv = xc + (v * NT + t) * kVecCols;
        const __m512 odd = _mm512_loadu_ps(xv), even = _mm512_loadu_ps(xv + L);
        for (int i = 0; i < RB; ++i) acc[i][t] = V::fma(wv[i][2 * v + 1], odd, acc[i][t]);
        for (int i = 0; i < RB; ++i) acc[i][t] = V::fma(wv[i][2 * v], even, acc[i][t]);
      }
    }
  };
  int64_t c = 0;
  for (; c + kStepCols <= cols; c += kStepCols) step(c, kStepCols);
  if (c < cols) step(c, int(cols - c));
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) y[t * ldy + i] = V::reduce_add(acc[i][t]);
}

// Rows per FMA tile: 4 x 4 decoded vectors + 4 x NT accumulators fit 32 registers up to 2 tokens.
constexpr int fma_tile_rows(int nt) { return nt <= 2 ? 4 : 3; }
static_assert(simd::kTileRowChunk % 4 == 0 && simd::kTileRowChunk % 3 == 0);

template <int NT>
void fma_tile_rows_any(int nt, const Matrix& w, int64_t r0, int64_t r1, const float* xp, float* y) {
  if constexpr (NT > 1)
    if (nt < NT) return fma_tile_rows_any<NT - 1>(nt, w, r0, r1, xp, y);
  constexpr int RB = fma_tile_rows(NT);
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  int64_t r = r0;
  for (; r + RB <= r1; r += RB) fma_tile<RB, NT>(w, data + size_t(r) * size_t(w.cols), xp, y + r, w.rows);
  for (; r < r1; ++r) fma_tile<1, NT>(w, data + size_t(r) * size_t(w.cols), xp, y + r, w.rows);
}

// Rows [r0, r1) of y through the FMA tiles; false if some activation is outside the path's
// range (pack_x_pairs), and then y's rows must be recomputed by the lookup tile.
bool linear_rows_fp8_fma(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1) {
  const FlushToZero ftz;
  bool exact = true;
  simd::linear_rows_blocked<kTileTokens, float>(
      w, x, y, n, r0, r1, 1.0f, kVecCols, packed_pairs,
      [&](const float* f, const float* xt, int64_t ldx, int nt, int64_t cols, float* xp) {
        exact = pack_x_pairs(f, xt, ldx, nt, cols, xp) && exact;
      },
      [&](int nt, int64_t rc, int64_t rce, const float* xp, float* yt) {
        fma_tile_rows_any<kTileTokens>(nt, w, rc, rce, xp, yt);
      });
  return exact;
}

template <Fp8Dot How>
void linear_rows(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float* scratch) {
  if (!is_bf16_path(w)) return variant().linear_rows(w, x, y, n, r0, r1, scratch);
  if (!bf16_supported(w)) return scalar::linear_rows_bf16dot(w, x, y, n, r0, r1, scratch);
  if (w.dtype == DType::BF16) return linear_rows_typed<DType::BF16>(w, x, y, n, r0, r1);
  const bool fma = How == Fp8Dot::kFma || (How == Fp8Dot::kAuto && fp8_dot() == Fp8Dot::kFma);
  if (fma && linear_rows_fp8_fma(w, x, y, n, r0, r1)) return;
  linear_rows_typed<DType::F8_E4M3>(w, x, y, n, r0, r1);
}

// ---- Many-token kernel: 16 lane GEMMs over pairs of columns -----------------------------------
//
// Lane l of the one-token kernel accumulates, per 32-column vector j = 0, 1, ..., J - 1, the
// pair (32j + 2l, 32j + 2l + 1). Here each lane is a GEMM over j whose "elements" are those
// pairs: a register tile of G = 32 rows (two vectors, row i's pair in dword i) x NT = 12 tokens
// (each token's pair broadcast to every dword) runs VDPBF16PS exactly as the one-token kernel
// does for that lane, and the lanes are merged by the same tree. Activations are packed once per
// call as float32 pairs [token tile][lane][j][NT][2] (they are rounded only after the FP8 block
// scale of the rows at hand multiplies them), rows decoded once per panel into BF16 pairs
// [lane][row group][j][G]. Sizes as the float32 GEMM (simd/gemm.h): MC rows per panel, NB
// tokens per pass over it, KJ steps per register tile pass (G x KJ pairs = 16 KiB in L1).
constexpr int G = 2 * L, NT = 12;
constexpr int64_t MC = 128, NB = 8 * NT, KJ = 128;
constexpr int kSlots = 5;  // partial sums of the lane tree (log2(16) + 1)
// Dwords between consecutive lanes' parts of the panel: the float32 GEMM's padded stride (a
// decoded block's 16 lane stores then hit 16 L1 sets, not one), for the same MC.
static_assert(MC == simd::GemmShape<V>::MC && sizeof(uint32_t) == sizeof(float));
int64_t lane_stride(int64_t J) { return simd::GemmShape<V>::lane_stride(J); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t vecs(const Matrix& w) { return ceil_div(w.cols, kVecCols); }

bool gemm_supports(const Matrix& w) {
  if (w.cols == 0) return false;
  if (!is_bf16_path(w)) return variant().gemm->supports(w);
  return bf16_supported(w);
}

int64_t gemm_packed_x_floats(const Matrix& w, int64_t n) {
  if (!is_bf16_path(w)) return variant().gemm->packed_x_floats(w, n);
  return ceil_div(n, NT) * NT * vecs(w) * kVecCols;
}

int64_t gemm_scratch_floats(const Matrix& w) {
  if (!is_bf16_path(w)) return variant().gemm->scratch_floats(w);
  const int64_t J = vecs(w);
  return lane_stride(J) * L + kSlots * NB * MC + NB * KJ + J * kVecCols;  // panel, partial sums, x', factors
}

// r[i] (i < 8: 8 pairs each) <- pair i of r[0..7]: an 8 x 8 transpose of 64-bit elements.
void transpose8_pd(__m512d (&r)[8]) {
  __m512d t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);  // pairs 0, 2, 4, 6 of rows 2i, 2i + 1
    t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
  }
  const __m512i even = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), odd = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h + 3
    u[4 * h + 0] = _mm512_permutex2var_pd(t[4 * h], even, t[4 * h + 2]);      // pairs 0, 4
    u[4 * h + 1] = _mm512_permutex2var_pd(t[4 * h], odd, t[4 * h + 2]);       // pairs 2, 6
    u[4 * h + 2] = _mm512_permutex2var_pd(t[4 * h + 1], even, t[4 * h + 3]);  // pairs 1, 5
    u[4 * h + 3] = _mm512_permutex2var_pd(t[4 * h + 1], odd, t[4 * h + 3]);   // pairs 3, 7
  }
  r[0] = _mm512_shuffle_f64x2(u[0], u[4], 0x44), r[4] = _mm512_shuffle_f64x2(u[0], u[4], 0xee);
  r[2] = _mm512_shuffle_f64x2(u[1], u[5], 0x44), r[6] = _mm512_shuffle_f64x2(u[1], u[5], 0xee);
  r[1] = _mm512_shuffle_f64x2(u[2], u[6], 0x44), r[5] = _mm512_shuffle_f64x2(u[2], u[6], 0xee);
  r[3] = _mm512_shuffle_f64x2(u[3], u[7], 0x44), r[7] = _mm512_shuffle_f64x2(u[3], u[7], 0xee);
}

// Token tiles [tile0, tile1) of x [n, cols] into xp[(((tile * L + l) * J + j) * NT + i) * 2 + e]
// = x[tile * NT + i, 32j + 2l + e], zero past the last token and column.
void gemm_pack_x(const Matrix& w, const float* x, int64_t n, int64_t tile0, int64_t tile1, float* xp) {
  if (!is_bf16_path(w)) return variant().gemm->pack_x(w, x, n, tile0, tile1, xp);
  const int64_t cols = w.cols, J = vecs(w);
  for (int64_t tile = tile0; tile < tile1; ++tile)
    for (int64_t j = 0; j < J; ++j) {
      const int64_t c = j * kVecCols;
      const int n0 = cols - c < L ? int(cols - c) : L, n1 = cols - c - L < L ? int(cols - c - L) : L;
      for (int b = 0; b < 2; ++b) {  // tokens 8b .. 8b + 7 of the tile (NT = 12: the last 4 are padding)
        __m512d lo[8], hi[8];  // pairs 0..7 and 8..15 of each token
        for (int i = 0; i < 8; ++i) {
          const int64_t t = tile * NT + 8 * b + i;
          const bool real = 8 * b + i < NT && t < n;
          lo[i] = real ? _mm512_castps_pd(V::load_f32(x + t * cols + c, n0)) : _mm512_setzero_pd();
          hi[i] = real && n1 > 0 ? _mm512_castps_pd(V::load_f32(x + t * cols + c + L, n1)) : _mm512_setzero_pd();
        }
        transpose8_pd(lo);
        transpose8_pd(hi);
        const int count = b == 0 ? 16 : 2 * (NT - 8);  // floats of this token block in a lane's NT pairs
        for (int l = 0; l < L; ++l) {
          const __m512 v = _mm512_castpd_ps(l < 8 ? lo[l] : hi[l - 8]);
          V::store_f32(xp + (((tile * L + l) * J + j) * NT + 8 * b) * 2, v, count);
        }
      }
    }
}

// Rows [ra, ra + m) (m <= MC) decoded into the panel wp[l * lane_stride(J) + (g * J + j) * G + i] = the
// BF16 pair (32j + 2l, 32j + 2l + 1) of row ra + g * G + i, zero past m (to a whole tile).
template <DType D>
void gemm_pack_w(const Matrix& w, int64_t ra, int64_t m, uint32_t* wp) {
  const Fp8Decoder dec;
  const int64_t cols = w.cols, J = vecs(w), row_bytes = cols * simd::elem_bytes<D>();
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  for (int64_t i0 = 0; i0 < ceil_div(m, G) * G; i0 += L) {  // 16 rows: one 16 x 16 dword transpose per vector
    const int rows = m - i0 < L ? int(m - i0 > 0 ? m - i0 : 0) : L;
    const int64_t g = i0 / G, gi = i0 % G;
    for (int64_t c = 0; c < cols; c += kStepCols) {
      const int cnt = cols - c < kStepCols ? int(cols - c) : kStepCols;
      __m512 a[L], b[L];
      for (int i = 0; i < L; ++i) {
        __m512i va = _mm512_setzero_si512(), vb = _mm512_setzero_si512();
        if (i < rows) load_step<D>(dec, data + size_t(ra + i0 + i) * size_t(row_bytes), c, cnt, va, vb);
        a[i] = _mm512_castsi512_ps(va), b[i] = _mm512_castsi512_ps(vb);
      }
      V::transpose(a);
      const int64_t j = c / kVecCols;
      for (int l = 0; l < L; ++l) _mm512_storeu_ps(wp + l * lane_stride(J) + (g * J + j) * G + gi, a[l]);
      if (j + 1 < J) {
        V::transpose(b);
        for (int l = 0; l < L; ++l) _mm512_storeu_ps(wp + l * lane_stride(J) + (g * J + j + 1) * G + gi, b[l]);
      }
    }
  }
}

// Lane l, steps [j0, j0 + kj) of token tiles [tile0, tile0 + ntiles): xs[(k * KJ + jj) * NT + i]
// = the BF16 pair of token i times the factors f (null: 1), as pack_x_bf16 rounds it.
void gemm_x_bf16(int64_t J, const float* f, const float* xp, int64_t tile0, int64_t ntiles, int l, int64_t j0,
                 int64_t kj, uint32_t* xs) {
  for (int64_t jj = 0; jj < kj; ++jj) {
    __m512 fv = V::set1(1.0f);
    if (f != nullptr) {
      double pair;
      std::memcpy(&pair, f + (j0 + jj) * kVecCols + 2 * l, sizeof pair);
      fv = _mm512_castpd_ps(_mm512_set1_pd(pair));
    }
    for (int64_t k = 0; k < ntiles; ++k) {
      const float* src = xp + (((tile0 + k) * L + l) * J + j0 + jj) * NT * 2;
      const __m512 a = V::mul(V::load_f32(src, L), fv), b = V::mul(V::load_f32(src + L, 2 * NT - L), fv);
      _mm512_mask_storeu_epi32(xs + (k * KJ + jj) * NT, __mmask16((1u << NT) - 1), to_bf16(a, b));
    }
  }
}

// One register tile of one lane: c[t * ldc + i] (+)= the pairs' VDPBF16PS chain over j < kj for
// rows i < G and tokens t < NTT, onto zero or (resume) onto c.
template <int NTT>
void gemm_micro(const uint32_t* wp, const uint32_t* xs, int64_t kj, float* c, int64_t ldc, bool resume) {
  __m512 acc[2][NTT];
  for (int k = 0; k < 2; ++k)
    for (int t = 0; t < NTT; ++t) acc[k][t] = resume ? V::load_f32(c + t * ldc + k * L, L) : V::zero();
  for (int64_t j = 0; j < kj; ++j) {
    const __m512i w0 = _mm512_loadu_si512(wp + j * G), w1 = _mm512_loadu_si512(wp + j * G + L);
    for (int t = 0; t < NTT; ++t) {
      uint32_t pair;
      std::memcpy(&pair, xs + j * NT + t, sizeof pair);
      const __m512i xb = _mm512_set1_epi32(int(pair));
      acc[0][t] = dp(acc[0][t], w0, xb);
      acc[1][t] = dp(acc[1][t], w1, xb);
    }
  }
  for (int t = 0; t < NTT; ++t)
    for (int k = 0; k < 2; ++k) V::store_f32(c + t * ldc + k * L, acc[k][t], L);
}

template <int NTT>
void gemm_micro_any(int nt, const uint32_t* wp, const uint32_t* xs, int64_t kj, float* c, int64_t ldc, bool resume) {
  if constexpr (NTT > 1)
    if (nt < NTT) return gemm_micro_any<NTT - 1>(nt, wp, xs, kj, c, ldc, resume);
  gemm_micro<NTT>(wp, xs, kj, c, ldc, resume);
}

template <DType D>
void gemm_rows_typed(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1,
                     float* scratch) {
  constexpr bool kFp8 = D == DType::F8_E4M3;
  const int64_t J = vecs(w);
  auto* wp = reinterpret_cast<uint32_t*>(scratch);
  float* slots = scratch + lane_stride(J) * L;
  auto* xs = reinterpret_cast<uint32_t*>(slots + kSlots * NB * MC);
  float* fx = reinterpret_cast<float*>(xs + NB * KJ);
  for (int64_t ra = r0; ra < r1;) {
    int64_t m = r1 - ra < MC ? r1 - ra : MC;
    if constexpr (kFp8) {
      m = simd::fp8_block_end(w, ra, ra + m) - ra;  // one scale block
      simd::fp8_x_factors(w, ra, 1.0f, kVecCols, fx);
    }
    const int64_t ng = ceil_div(m, G), mv = ceil_div(m, L) * L;
    gemm_pack_w<D>(w, ra, m, wp);
    for (int64_t tb = t0; tb < t1; tb += NB) {
      const int64_t nb = t1 - tb < NB ? t1 - tb : NB;
      simd::lane_tree_sum<V, kSlots>(slots, NB * MC, nb, mv, MC, [&](int l, float* acc) {
        for (int64_t j0 = 0; j0 < J; j0 += KJ) {
          const int64_t kj = J - j0 < KJ ? J - j0 : KJ;
          gemm_x_bf16(J, kFp8 ? fx : nullptr, xp, tb / NT, ceil_div(nb, NT), l, j0, kj, xs);
          for (int64_t t = 0; t < nb; t += NT) {
            const int nt = nb - t < NT ? int(nb - t) : NT;
            for (int64_t g = 0; g < ng; ++g)
              gemm_micro_any<NT>(nt, wp + l * lane_stride(J) + (g * J + j0) * G, xs + t / NT * KJ * NT, kj,
                                 acc + t * MC + g * G, MC, j0 > 0);
          }
        }
      });
      for (int64_t t = 0; t < nb; ++t)
        for (int64_t i = 0; i < m; i += L)
          V::store_f32(y + (tb + t) * w.rows + ra + i, V::load_f32(slots + t * MC + i, L), m - i < L ? int(m - i) : L);
    }
    ra += m;
  }
}

void gemm_rows(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1,
               float* scratch) {
  if (!is_bf16_path(w)) return variant().gemm->rows(w, xp, y, t0, t1, r0, r1, scratch);  // F32, F16, ggml blocks
  if (w.dtype == DType::BF16) return gemm_rows_typed<DType::BF16>(w, xp, y, t0, t1, r0, r1, scratch);
  gemm_rows_typed<DType::F8_E4M3>(w, xp, y, t0, t1, r0, r1, scratch);
}

static_assert(NT == V::kGemmTokens && G == V::kGemmRowRegs * V::kLanes, "one token and row tile for both GEMMs");
const Gemm kGemm{
    V::kGemmMinTokens, V::kGemmMinTokens, NT, G, gemm_supports, gemm_packed_x_floats, gemm_scratch_floats, gemm_pack_x, gemm_rows,
};

// Times the two FP8 one-token paths on a 64 x 2048 matrix in L2 (~10 us a call), alternating,
// best of 9 each: the decode's instruction mix, not memory, is what differs between them.
Fp8Dot time_fp8_dot() {
  constexpr int64_t rows = 64, cols = 2048;
  std::vector<uint8_t> codes(size_t(rows * cols));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint8_t(((i * 37 + 11) & 0xef) | 0x08);  // normal, no NaN
  std::vector<float> x(static_cast<size_t>(cols)), y(static_cast<size_t>(rows));
  for (int64_t c = 0; c < cols; ++c) x[size_t(c)] = 1.0f + float(c % 7) * 0.125f;
  const Matrix w{DType::F8_E4M3, rows, cols, codes.data()};
  auto seconds = [&](auto&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 4; ++k) fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double lookup = 1e30, fma = 1e30;
  for (int round = 0; round < 9; ++round) {
    lookup = std::min(lookup, seconds([&] { linear_rows_typed<DType::F8_E4M3>(w, x.data(), y.data(), 1, 0, rows); }));
    fma = std::min(fma, seconds([&] { linear_rows_fp8_fma(w, x.data(), y.data(), 1, 0, rows); }));
  }
  return fma < lookup ? Fp8Dot::kFma : Fp8Dot::kLookup;
}

Variant make_bf16_variant(const char* name, decltype(Variant::linear_rows) rows) {
  Variant b = variant();
  b.name = name;
  b.linear_rows = rows;
  b.gemm = &kGemm;
  b.bf16_activations = true;
  return b;
}

}  // namespace

Fp8Dot fp8_dot() {
  static const Fp8Dot how = time_fp8_dot();
  return how;
}

const Variant& bf16_variant() {
  static const Variant v = make_bf16_variant("avx512bf16", linear_rows<Fp8Dot::kAuto>);
  return v;
}

const Variant& bf16_variant(Fp8Dot how) {
  static const Variant lookup = make_bf16_variant("avx512bf16-lookup", linear_rows<Fp8Dot::kLookup>),
                       fma = make_bf16_variant("avx512bf16-fma", linear_rows<Fp8Dot::kFma>);
  return how == Fp8Dot::kAuto ? bf16_variant() : how == Fp8Dot::kFma ? fma : lookup;
}

}  // namespace dsv3::kernels::avx512
