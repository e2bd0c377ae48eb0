// linear for weights in ggml block formats (core/ggml_blocks.h), written once against an ISA's
// integer traits Q (avx512/qtraits.h, avx2/qtraits.h) and instantiated in that ISA's
// translation unit, like simd/linear.h.
//
// Numerics: integer activations. Each token's activations are quantized per 256 columns to
// integers, x ~ dx * xi with dx = amax / X (round to nearest even): X = 16383 (int16: each
// activation moves by at most 2^-15 of its block's largest; BF16 rounding moves it by up to 2^-9
// of itself) for most formats, X = 127 (8 bits, llama.cpp's Q8_K grid) for Q2_K-Q5_K
// (kernels/block_activations.h says why). int16: weights are decoded to their integer form,
// times the sub-block's integer scale where the format has one (K-quants: 4 x 63 = 945 for Q4_K,
// at most 4096 for Q6_K), and multiplied with VPMADDWD into int32 lanes, exactly, over a block
// (32 values) or super-block (256); lane l sums columns 2l, 2l + 1 of each 2 x Q::kLanes. 8-bit
// (tile8): the unsigned values times xi with VPMADDUBSW (at most 2 x 31 x 127 per
// int16), then VPMADDWD by the sub-block's scale; lane l sums columns 4l..4l+3 of each 4 x
// Q::kLanes. Only then is float arithmetic used: per block and lane acc += float(isum) x (d x dx),
// and the formats' minima (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K; Q3_K's offset likewise) add -d_min x (sum over sub-blocks of m x
// sum(xi)) x dx per block, the sums of xi (per 16 and 32 columns, exact as floats) computed with
// the activations and the sum over sub-blocks an 8- or 16-wide float dot product. The int32 sums
// cannot overflow: int16, |xi| <= 16383 and a lane sums at most 16 pairs of products (2 x 16 x
// 4096 x 16383 < 2^31); 8-bit, a lane sums at most 32 products of 31 x 127 x 63.
// A (row, token) result depends only on that row and token: not on the thread count, the
// rows or tokens computed with it, nor n.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/ggml_blocks.h"
#include "kernels/block_activations.h"
#include "kernels/matrix.h"

namespace dsv3::kernels::simd::qblocks {

constexpr int kXBlock = 256;  // columns per activation scale

// Every function here is a template over Q or static, as in simd/linear.h: none compiled for
// one ISA can be merged by the linker into another's code.

template <class Q>
float half_at(const uint8_t* p) {  // an IEEE half stored at p (any alignment)
  uint16_t h;
  std::memcpy(&h, p, 2);
  return Q::half_to_float(h);
}
static inline uint32_t u32_at(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Columns per int16 sum of xi that an 8-bit format's term dot takes (QTokens::xsum): Q2_K's
// minima and Q3_K's offset go per sub-block of 16, Q4_K's and Q5_K's minima per 32.
constexpr int64_t xsum_cols(DType d) { return d == DType::Q2_K || d == DType::Q3_K ? 16 : 32; }

// One token's activations as the kernels read them: xi [cols] (x8 instead for the formats with
// 8-bit activations), dx [ceil(cols / 256)], and the sums of xi over each 16 and each 32 columns
// as floats (exact: at most 32 x 16383), for the minima terms.
struct QTokens {
  const int16_t* xi;
  const int8_t* x8;
  const int16_t* xsum;  // with x8: the sums of the xi over each xsum_cols(D) columns, as int16
  const float* dx;
  const float* bsum16;
  const float* bsum32;
};

// x[0, cols) -> xi (|xi| <= xmax, as int16 or int8), dx, bsum16, bsum32 (cols a multiple of 32;
// `isum` holds cols / 16 ints). Non-finite activations give dx = NaN, xi = 0: the products come
// out NaN, as the float kernels' would.
template <class Q, class T>
void quantize_x(const float* x, int64_t cols, int xmax, T* xi, float* dx, int32_t* isum, float* bsum16, float* bsum32) {
  for (int64_t s = 0; s * kXBlock < cols; ++s) {
    const int64_t c0 = s * kXBlock, n = c0 + kXBlock < cols ? kXBlock : cols - c0;
    const float amax = Q::absmax(x + c0, n);
    if (!std::isfinite(amax)) {
      dx[s] = NAN;
      std::memset(xi + c0, 0, size_t(n) * sizeof(T));
      std::memset(isum + c0 / 16, 0, size_t(n / 16) * sizeof(int32_t));
      continue;
    }
    dx[s] = amax / float(xmax);
    const float inv = amax > 0 ? float(xmax) / amax : 0.0f;
    Q::round(x + c0, n, inv, xi + c0, isum + c0 / 16);
  }
  for (int64_t j = 0; j < cols / 16; ++j) bsum16[j] = float(isum[j]);
  for (int64_t j = 0; j < cols / 32; ++j) bsum32[j] = float(isum[2 * j] + isum[2 * j + 1]);
}

// ---- Formats: a block's factors (prep), the integer form of its 32-value group g (group), and
// for the int16 formats with kTerm the additive term of its minima, in units of dx (term; the
// 8-bit formats' terms are integer dots in their tiles and float dots in the GEMM) ------------------

template <class Q, DType D>
struct Fmt;

template <class Q>
struct Fmt<Q, DType::Q8_0> {
  static constexpr int kElems = 32, kBytes = 34, kBatch = 1;
  static constexpr bool kTerm = false;
  struct Prep {
    float d;
  };
  static Prep prep(const uint8_t* b) { return {half_at<Q>(b)}; }
  static void decode(const uint8_t* b, int, const Prep&, typename Q::I16 (&w)[1]) {
    w[0] = Q::sx32(reinterpret_cast<const int8_t*>(b + 2));
  }
  static float term(const uint8_t*, const Prep&, const QTokens&, int64_t) { return 0; }
};

// Nibbles of 16 bytes: value j < 16 is the low nibble of byte j, 16 + j the high one.
template <class Q>
typename Q::I16 nibbles16(const uint8_t* qs) {
  return Q::and_(Q::srl(Q::zx16_twice(qs), 0, 4), 15);
}

template <class Q>
struct Fmt<Q, DType::Q4_0> {
  static constexpr int kElems = 32, kBytes = 18, kBatch = 1;
  static constexpr bool kTerm = false;
  struct Prep {
    float d;
  };
  static Prep prep(const uint8_t* b) { return {half_at<Q>(b)}; }
  static void decode(const uint8_t* b, int, const Prep&, typename Q::I16 (&w)[1]) { w[0] = Q::sub(nibbles16<Q>(b + 2), 8); }
  static float term(const uint8_t*, const Prep&, const QTokens&, int64_t) { return 0; }
};

template <class Q>
struct Fmt<Q, DType::Q4_1> {
  static constexpr int kElems = 32, kBytes = 20, kBatch = 1;
  static constexpr bool kTerm = true;
  struct Prep {
    float d, m;
  };
  static Prep prep(const uint8_t* b) { return {half_at<Q>(b), half_at<Q>(b + 2)}; }
  static void decode(const uint8_t* b, int, const Prep&, typename Q::I16 (&w)[1]) { w[0] = nibbles16<Q>(b + 4); }
  static float term(const uint8_t*, const Prep& p, const QTokens& x, int64_t c0) { return p.m * x.bsum32[c0 / 32]; }
};

template <class Q>
struct Fmt<Q, DType::Q5_0> {
  static constexpr int kElems = 32, kBytes = 22, kBatch = 1;
  static constexpr bool kTerm = false;
  struct Prep {
    float d;
  };
  static Prep prep(const uint8_t* b) { return {half_at<Q>(b)}; }
  static void decode(const uint8_t* b, int, const Prep&, typename Q::I16 (&w)[1]) {
    w[0] = Q::sub(Q::or_(nibbles16<Q>(b + 6), Q::bits(u32_at(b + 2), 16)), 16);
  }
  static float term(const uint8_t*, const Prep&, const QTokens&, int64_t) { return 0; }
};

template <class Q>
struct Fmt<Q, DType::Q5_1> {
  static constexpr int kElems = 32, kBytes = 24, kBatch = 1;
  static constexpr bool kTerm = true;
  struct Prep {
    float d, m;
  };
  static Prep prep(const uint8_t* b) { return {half_at<Q>(b), half_at<Q>(b + 2)}; }
  static void decode(const uint8_t* b, int, const Prep&, typename Q::I16 (&w)[1]) {
    w[0] = Q::or_(nibbles16<Q>(b + 8), Q::bits(u32_at(b + 4), 16));
  }
  static float term(const uint8_t*, const Prep& p, const QTokens& x, int64_t c0) { return p.m * x.bsum32[c0 / 32]; }
};

// Q2_K: scales[16] @0 (low nibble scale, high minimum per 16 values), qs[64] @16, d @80, dmin @82.
// Groups 4h..4h+3 (values 128h + 32k + l): crumb k of qs[32h + l], one load for the four.
template <class Q>
struct Fmt<Q, DType::Q2_K> {
  static constexpr int kElems = 256, kBytes = 84, kBatch = 4;
  static constexpr bool kTerm = true;
  struct Prep {
    float d, dmin;
  };
  static Prep prep(const uint8_t* b) { return {half_at<Q>(b + 80), half_at<Q>(b + 82)}; }
  static void decode(const uint8_t* b, int h, const Prep&, typename Q::I16 (&w)[kBatch]) {
    const typename Q::I16 v = Q::zx32(b + 16 + 32 * h);
    const typename Q::Tab sc = Q::tab_lo4(b + 8 * h);  // the scales of groups 4h..4h+3
    for (int k = 0; k < 4; ++k) {
      const typename Q::I16 q = k == 3 ? Q::srl(v, 6, 6) : Q::and_(Q::srl(v, 2 * k, 2 * k), 3);
      w[k] = Q::mul_tab(q, sc, 2 * k, 2 * k + 1);
    }
  }
};

// Q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d @108. Value 128h + 32k + l (group g = 4h + k):
// crumb k of qs[32h + l], minus 4 unless bit g of hmask[l] is set. With 8-bit activations the
// integer form is the unsigned 0..7 (crumb, plus 4 where the bit is set) times the scale, and the
// -4 is a term like the minima: -d x 4 x sum_j sc[j] x (sum of the 16 xi of sub-block j).
template <class Q>
struct Fmt<Q, DType::Q3_K> {
  static constexpr int kElems = 256, kBytes = 110, kBatch = 4;
  static_assert(int8_activations(DType::Q3_K), "the unsigned form and its offset term are the 8-bit numerics");
  static constexpr bool kTerm = true;
  struct Prep {
    float d;
    int8_t sc[16];
  };
  static Prep prep(const uint8_t* b) {
    Prep p;
    p.d = half_at<Q>(b + 108);
    Q::q3k_scales(b + 96, p.sc);  // ggml::q3k_scale for all 16
    return p;
  }
  static void decode(const uint8_t* b, int h, const Prep& p, typename Q::I16 (&w)[kBatch]) {
    const typename Q::I16 v = Q::zx32(b + 32 + 32 * h), hm = Q::zx32(b);
    const typename Q::Tab sc = Q::tab_s8(p.sc + 8 * h);
    for (int k = 0; k < 4; ++k) {
      const int g = 4 * h + k;
      const typename Q::I16 q = k == 3 ? Q::srl(v, 6, 6) : Q::and_(Q::srl(v, 2 * k, 2 * k), 3);
      const typename Q::I16 hb = Q::sll(Q::and_(Q::srl(hm, g, g), 1), 2);
      w[k] = Q::mul_tab(Q::or_(q, hb), sc, 2 * k, 2 * k + 1);
    }
  }
};

// Q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16; Q5_K adds qh[32] @16 and moves qs to @48.
// Groups 2j, 2j + 1: the low and high nibbles of qs[32j + l], one load for both (Q5_K: plus bit
// g of qh[l] as 16).
template <class Q, bool Q5>
struct FmtQ45K {
  static constexpr int kElems = 256, kBytes = Q5 ? 176 : 144, kBatch = 2;
  static constexpr bool kTerm = true;
  struct Prep {
    float d, dmin;
    uint8_t sc[8], m[8];
  };
  static Prep prep(const uint8_t* b) {
    Prep p;
    p.d = half_at<Q>(b);
    p.dmin = half_at<Q>(b + 2);
    // ggml::q4k_scale_min for all 8 sub-blocks on 32-bit words: bytes 0-3 hold the low 6 bits
    // of scales 0-3 (top 2 bits: scales 4-7's high bits), bytes 4-7 the same for the minima,
    // bytes 8-11 the low nibbles of scales 4-7 and high nibbles of minima 4-7.
    uint32_t u[3];
    std::memcpy(u, b + 4, 12);
    const uint32_t sc[2] = {u[0] & 0x3f3f3f3fu, (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4)};
    const uint32_t m[2] = {u[1] & 0x3f3f3f3fu, ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4)};
    std::memcpy(p.sc, sc, 8);
    std::memcpy(p.m, m, 8);
    return p;
  }
  static void decode(const uint8_t* b, int j, const Prep& p, typename Q::I16 (&w)[kBatch]) {
    const typename Q::I16 v = Q::zx32(b + (Q5 ? 48 : 16) + 32 * j);
    typename Q::I16 lo = Q::and_(v, 15), hi = Q::srl(v, 4, 4);
    if constexpr (Q5) {
      const typename Q::I16 h = Q::srl(Q::zx32(b + 16), 2 * j, 2 * j);
      lo = Q::or_(lo, Q::sll(Q::and_(h, 1), 4));
      hi = Q::or_(hi, Q::sll(Q::and_(h, 2), 3));
    }
    const typename Q::Tab sc = Q::tab_u8(p.sc);
    w[0] = Q::mul_tab(lo, sc, 2 * j, 2 * j);
    w[1] = Q::mul_tab(hi, sc, 2 * j + 1, 2 * j + 1);
  }
};
template <class Q>
struct Fmt<Q, DType::Q4_K> : FmtQ45K<Q, false> {};
template <class Q>
struct Fmt<Q, DType::Q5_K> : FmtQ45K<Q, true> {};

// Q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208. Value 128h + 32k + l (group
// g = 4h + k): nibble k / 2 of ql[64h + 32 (k % 2) + l], high crumb k of qh[32h + l], minus 32;
// three loads for the four groups of h.
template <class Q>
struct Fmt<Q, DType::Q6_K> {
  static constexpr int kElems = 256, kBytes = 210, kBatch = 4;
  static constexpr bool kTerm = false;
  struct Prep {
    float d;
  };
  static Prep prep(const uint8_t* b) { return {half_at<Q>(b + 208)}; }
  static void decode(const uint8_t* b, int h, const Prep&, typename Q::I16 (&w)[kBatch]) {
    const typename Q::I16 l0 = Q::zx32(b + 64 * h), l1 = Q::zx32(b + 64 * h + 32), hb = Q::zx32(b + 128 + 32 * h);
    const typename Q::I16 lo[4] = {Q::and_(l0, 15), Q::and_(l1, 15), Q::srl(l0, 4, 4), Q::srl(l1, 4, 4)};
    const typename Q::Tab sc = Q::tab_s8(reinterpret_cast<const int8_t*>(b + 192 + 8 * h));  // groups 4h..4h+3
    // Crumb k of hb moved to bits 4-5 with one shift or none (shifts share one port with the
    // multiplies on Intel's AVX-512 cores).
    const typename Q::I16 hi[4] = {Q::and_(Q::sll(hb, 4), 0x30), Q::and_(Q::sll(hb, 2), 0x30), Q::and_(hb, 0x30),
                                   Q::and_(Q::srl(hb, 2, 2), 0x30)};
    for (int k = 0; k < 4; ++k) w[k] = Q::mul_tab(Q::sub(Q::or_(lo[k], hi[k]), 32), sc, 2 * k, 2 * k + 1);
  }
  static float term(const uint8_t*, const Prep&, const QTokens&, int64_t) { return 0; }
};

// ---- Register tiles --------------------------------------------------------------------------

// A chunk of rows decoded once (for many tokens): row i's int16 weights at w + i x cols, its
// blocks' factors at prep + i x nblocks. Null w: the tiles decode from the mapped rows.
template <class Prep>
struct Panel {
  const int16_t* w = nullptr;
  const Prep* prep = nullptr;
  int64_t cols = 0;
};

// The float step of the tiles: per block acc = fma(float(is), d x dx, acc) per lane and
// sacc = fma(term, dx, sacc); at the end y = reduce_add(acc) + sacc.
template <class Q, class F, int RB, int NT>
[[gnu::always_inline]] inline void block_step(const typename Q::I32 (&is)[RB][NT], const typename F::Prep (&p)[RB],
                                              const uint8_t* rows, int64_t row_bytes, int64_t off, int64_t c0,
                                              const QTokens* xt, typename Q::F (&acc)[RB][NT], float (&sacc)[RB][NT]) {
  const int64_t s = c0 / kXBlock;
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) {
      acc[i][t] = Q::fma(Q::cvt(is[i][t]), Q::set1(p[i].d * xt[t].dx[s]), acc[i][t]);
      if constexpr (F::kTerm)
        // An explicit fma: GCC contracts C++ multiply-adds in these FMA-enabled units as it likes
        // (its ISO-mode -ffp-contract=off covers C only), which differed between tile shapes.
        sacc[i][t] = std::fma(F::term(rows + i * row_bytes + off, p[i], xt[t], c0), xt[t].dx[s], sacc[i][t]);
    }
}

// The tiles' prefetch: the tile's rows as one sequential stream 4 KiB ahead (simd/linear.h:
// prefetch_tile).
template <class F, int RB>
[[gnu::always_inline]] inline void prefetch_blocks(const uint8_t* rows, int64_t row_bytes, int64_t off) {
  for (int i = 0; i < RB; ++i) {
    const int64_t at = off * RB + i * F::kBytes;
    for (int64_t a = (at + 63) & ~int64_t(63); a < at + F::kBytes; a += 64)
      __builtin_prefetch(rows + (RB - 1) * row_bytes + 4096 + a, 0, 3);
  }
}

// The per-block parts of tile8 (below) for each 8-bit format, for RB <= 4 rows at blk[0..3]
// (rows past RB repeat row 0): their scales, the term's integer factors and d, d_min as 4 lanes
// (DMin4), built once per block; w(b, j, u) and f(i, j, u), the bytes and int16 factors of vector
// u of 64-column group j of row i (block b); isum(x, c0), the 4 rows' integer term dots for a
// token. Every product and sum of a term is an integer below 2^24, so its float is the scalar
// twin's and the GEMM's (their float dots are exact).
template <class Q, DType D, int RB>
struct Block8;

// Q4_K and Q5_K: per 64 columns the two sub-blocks' nibbles (Q::q4k_u8; Q5_K ORs in its fifth
// bits, Q::q5k_hi) and scales (Q::scale_u8). Scales and minima unpack with byte shuffles
// (Q::q4k_scales_mins: both formats' d, d_min and scales share the layout); the minima dot runs
// over the sums of 32 xi (at most 4064).
template <class Q, DType D, int RB>
  requires(D == DType::Q4_K || D == DType::Q5_K)
struct Block8<Q, D, RB> {
  static constexpr bool kQ5 = D == DType::Q5_K;
  static constexpr int64_t kQs = kQ5 ? 48 : 16;  // qs' offset in the block (Q5_K: qh[32] at 16)
  typename Q::Tab sc[RB];
  typename Q::SM mins[4];
  typename Q::DMin4 dm;
  explicit Block8(const uint8_t* const (&blk)[4]) {
    for (int i = 0; i < RB; ++i) {
      const typename Q::SM v = Q::q4k_scales_mins(blk[i] + 4);
      sc[i] = Q::tab_scales(v);
      mins[i] = Q::mins16(v);
    }
    for (int i = RB; i < 4; ++i) mins[i] = mins[0];
    dm = Q::q4k_d_dmin4(blk);
  }
  static typename Q::U8 w(const uint8_t* b, int j, int u) {
    const typename Q::U8 v = Q::q4k_u8(b + kQs + 32 * j, u);
    if constexpr (kQ5) return Q::or8(v, Q::q5k_hi(b + 16, j, u));
    return v;
  }
  auto f(int i, int j, int u) const { return Q::scale_u8(sc[i], 2 * j, u); }
  auto isum(const QTokens& x, int64_t c0) const { return Q::mins_isum8x4(mins, x.xsum + c0 / 32); }
};

// Q2_K and Q3_K (sub-blocks of 16 values): per 64 columns two crumbs of 32 bytes of qs
// (Q::q2k_u8; Q3_K ORs in its high bits from hmask, Q::q3k_hi) and the four sub-blocks' scales
// (Q::q2k_scale). The term's factors are Q2_K's minima or Q3_K's signed scales (its term is
// -4d x sum sc_j x sum16_j: d_min := 4d, exact), its dot over the sums of 16 xi (at most 2032).
template <class Q, DType D, int RB>
  requires(D == DType::Q2_K || D == DType::Q3_K)
struct Block8<Q, D, RB> {
  static constexpr bool kQ3 = D == DType::Q3_K;
  static constexpr int64_t kQs = kQ3 ? 32 : 16;  // qs' offset in the block (Q3_K: hmask[32] at 0)
  typename Q::Tab sc[RB][2];  // the scales of sub-blocks 8h..8h + 7
  typename Q::M16 m16[4];
  typename Q::DMin4 dm;
  explicit Block8(const uint8_t* const (&blk)[4]) {
    if constexpr (kQ3) {
      float d[4];
      for (int i = 0; i < 4; ++i) {
        const typename Fmt<Q, D>::Prep p = Fmt<Q, D>::prep(blk[i]);
        d[i] = p.d;
        m16[i] = Q::s8x16(p.sc);
        if (i < RB)
          for (int h = 0; h < 2; ++h) sc[i][h] = Q::tab_s8(p.sc + 8 * h);
      }
      dm = Q::d4_times4(d);
    } else {
      const uint8_t* dd[4];
      for (int i = 0; i < 4; ++i) {
        m16[i] = Q::hi4x16(blk[i]);
        dd[i] = blk[i] + 80;
        if (i < RB)
          for (int h = 0; h < 2; ++h) sc[i][h] = Q::tab_lo4(blk[i] + 8 * h);
      }
      dm = Q::q4k_d_dmin4(dd);  // d @80, d_min @82: Q4_K's first 4 bytes' layout
    }
  }
  // Group j holds values 64j..64j + 63: crumbs 2 (j % 2) and 2 (j % 2) + 1 of qs[32 (j / 2) + l]
  // (hmask bits 2j, 2j + 1), sub-blocks 4j..4j + 3.
  static typename Q::U8 w(const uint8_t* b, int j, int u) {
    const typename Q::U8 v = Q::q2k_u8(b + kQs + 32 * (j / 2), j % 2, u);
    if constexpr (kQ3) return Q::or8(v, Q::q3k_hi(b, 2 * j, u));
    return v;
  }
  auto f(int i, int j, int u) const { return Q::q2k_scale(sc[i][j / 2], 4 * (j % 2), u); }
  auto isum(const QTokens& x, int64_t c0) const { return Q::isum16x4(m16, x.xsum + c0 / 16); }
};

// tile (below) for the formats with 8-bit activations (Q2_K-Q5_K): per 64 columns of a row the
// values as unsigned bytes and their sub-blocks' scales as int16 factors once (Block8), then per
// token VPMADDUBSW (at most 2 x 31 x 127 per int16), VPMADDWD by the scales and VPADDD. The
// weights are always decoded in registers (no panel). Per block and token the float step runs for
// 4 rows at once, a row per xmm lane (Q::q4k_step4): f = d x dx, acc = fma(float(is), f, acc),
// sacc = fma(-d_min x float(term's integer dot), dx, sacc): block_step's operations, one row at a
// time, on the same values.
template <class Q, DType D, int RB, int NT>
void tile8(const uint8_t* rows, int64_t row_bytes, int64_t nblocks, const QTokens* xt, float* y, int64_t ldy) {
  static_assert(RB <= 4, "the per-block step holds a row per lane of 4");
  using F = Fmt<Q, D>;
  using B = Block8<Q, D, RB>;
  constexpr int U = 64 / Q::kU8Cols;
  typename Q::F acc[RB][NT];
  typename Q::V4 sacc[NT];  // the terms' chains, row i in lane i
  for (int t = 0; t < NT; ++t) {
    sacc[t] = Q::zero4();
    for (int i = 0; i < RB; ++i) acc[i][t] = Q::zero();
  }
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t off = b * F::kBytes, c0 = b * F::kElems, s = c0 / kXBlock;
    prefetch_blocks<F, RB>(rows, row_bytes, off);
    const uint8_t* blk[4];
    for (int i = 0; i < 4; ++i) blk[i] = rows + (i < RB ? i : 0) * row_bytes + off;
    const B bk(blk);
    typename Q::I32 is[RB][NT];
    for (int i = 0; i < RB; ++i)
      for (int t = 0; t < NT; ++t) is[i][t] = Q::zero32();
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j)
#pragma GCC unroll 4
      for (int i = 0; i < RB; ++i)
#pragma GCC unroll 2
        for (int u = 0; u < U; ++u) {
          const typename Q::U8 w = B::w(blk[i], j, u);
          const auto f = bk.f(i, j, u);
          const int64_t c = c0 + 64 * j + Q::kU8Cols * u;
          for (int t = 0; t < NT; ++t) is[i][t] = Q::dot8_acc(is[i][t], w, Q::load8(xt[t].x8 + c), f);
        }
    for (int t = 0; t < NT; ++t) {
      const typename Q::V4 f = Q::q4k_step4(bk.dm, bk.isum(xt[t], c0), xt[t].dx[s], sacc[t]);
      for (int i = 0; i < RB; ++i) acc[i][t] = Q::fma(Q::cvt(is[i][t]), Q::bcast_lane(f, i), acc[i][t]);
    }
  }
  for (int t = 0; t < NT; ++t) {
    float sa[4];
    Q::store4(sa, sacc[t]);
    for (int i = 0; i < RB; ++i) y[t * ldy + i] = Q::reduce_add(acc[i][t]) + sa[i];
  }
}

// tile (below) for the formats with int16 activations: the weights decoded in registers or,
// with a panel, loaded from it (the same int16 values).
template <class Q, DType D, int RB, int NT>
void tile16(const uint8_t* rows, int64_t row_bytes, int64_t nblocks, const QTokens* xt, float* y, int64_t ldy,
            Panel<typename Fmt<Q, D>::Prep> panel) {
  static_assert(!int8_activations(D), "a format with 8-bit activations needs its own tile");
  using F = Fmt<Q, D>;
  constexpr int G = F::kElems / 32;
  typename Q::F acc[RB][NT];
  float sacc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) {
      acc[i][t] = Q::zero();
      sacc[i][t] = 0;
    }
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t off = b * F::kBytes, c0 = b * F::kElems;
    typename F::Prep p[RB];
    if (panel.w == nullptr) {
      prefetch_blocks<F, RB>(rows, row_bytes, off);
      for (int i = 0; i < RB; ++i) p[i] = F::prep(rows + i * row_bytes + off);
    } else {
      for (int i = 0; i < RB; ++i) p[i] = panel.prep[i * nblocks + b];
    }
    typename Q::I32 is[RB][NT];
    for (int i = 0; i < RB; ++i)
      for (int t = 0; t < NT; ++t) is[i][t] = Q::zero32();
#pragma GCC unroll 8
    for (int gb = 0; gb < G / F::kBatch; ++gb)
#pragma GCC unroll 4
      for (int i = 0; i < RB; ++i) {
        typename Q::I16 w[F::kBatch];
        if (panel.w == nullptr)
          F::decode(rows + i * row_bytes + off, gb, p[i], w);
        else
          for (int q = 0; q < F::kBatch; ++q) w[q] = Q::load16(panel.w + i * panel.cols + c0 + 32 * (gb * F::kBatch + q));
        for (int q = 0; q < F::kBatch; ++q) {
          const int64_t c = c0 + 32 * (gb * F::kBatch + q);
          for (int t = 0; t < NT; ++t) is[i][t] = Q::dot_acc(is[i][t], w[q], Q::load16(xt[t].xi + c));
        }
      }
    block_step<Q, F, RB, NT>(is, p, rows, row_bytes, off, c0, xt, acc, sacc);
  }
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) y[t * ldy + i] = Q::reduce_add(acc[i][t]) + sacc[i][t];
}

// y[t * ldy + i] for RB rows from `rows` (row_bytes apart) and NT tokens. Every (row, token)
// sees the same operations in the same order whatever RB, NT and the panel (which the 8-bit
// tiles, decoding in registers, do not take).
template <class Q, DType D, int RB, int NT>
void tile(const uint8_t* rows, int64_t row_bytes, int64_t nblocks, const QTokens* xt, float* y, int64_t ldy,
          Panel<typename Fmt<Q, D>::Prep> panel) {
  if constexpr (int8_activations(D))
    tile8<Q, D, RB, NT>(rows, row_bytes, nblocks, xt, y, ldy);
  else
    tile16<Q, D, RB, NT>(rows, row_bytes, nblocks, xt, y, ldy, panel);
}

// Rows [r0, r1) for NT tokens; a panel, if any, holds rows from r0 on.
template <class Q, DType D, int NT>
void tile_rows(const Matrix& w, int64_t r0, int64_t r1, const QTokens* xt, float* y, Panel<typename Fmt<Q, D>::Prep> panel) {
  constexpr int RB = Q::tile_rows(NT);
  const int64_t row_bytes = int64_t(w.row_bytes()), nblocks = w.cols / Fmt<Q, D>::kElems;
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  auto at = [&](int64_t r) {  // the panel from row r on
    Panel<typename Fmt<Q, D>::Prep> p = panel;
    if (p.w != nullptr) {
      p.w += (r - r0) * p.cols;
      p.prep += (r - r0) * nblocks;
    }
    return p;
  };
  int64_t r = r0;
  for (; r + RB <= r1; r += RB) tile<Q, D, RB, NT>(data + r * row_bytes, row_bytes, nblocks, xt, y + r, w.rows, at(r));
  for (; r < r1; ++r) tile<Q, D, 1, NT>(data + r * row_bytes, row_bytes, nblocks, xt, y + r, w.rows, at(r));
}

template <class Q, DType D, int NT>
void tile_rows_any(int nt, const Matrix& w, int64_t r0, int64_t r1, const QTokens* xt, float* y,
                   Panel<typename Fmt<Q, D>::Prep> panel) {
  if constexpr (NT > 1)
    if (nt < NT) return tile_rows_any<Q, D, NT - 1>(nt, w, r0, r1, xt, y, panel);
  tile_rows<Q, D, NT>(w, r0, r1, xt, y, panel);
}

// Rows [r0, r1) decoded into a panel (see Panel): w [r1 - r0][cols], prep [r1 - r0][nblocks].
template <class Q, DType D>
void decode_panel(const Matrix& w, int64_t r0, int64_t r1, int16_t* pw, typename Fmt<Q, D>::Prep* pp) {
  using F = Fmt<Q, D>;
  const int64_t row_bytes = int64_t(w.row_bytes()), nblocks = w.cols / F::kElems;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t b = 0; b < nblocks; ++b) {
      const uint8_t* blk = static_cast<const uint8_t*>(w.data) + r * row_bytes + b * F::kBytes;
      const typename F::Prep p = F::prep(blk);
      pp[(r - r0) * nblocks + b] = p;
      for (int gb = 0; gb < F::kElems / 32 / F::kBatch; ++gb) {
        typename Q::I16 v[F::kBatch];
        F::decode(blk, gb, p, v);
        for (int q = 0; q < F::kBatch; ++q) Q::store16(pw + (r - r0) * w.cols + b * F::kElems + 32 * (gb * F::kBatch + q), v[q]);
      }
    }
}

// Rows [r0, r1) of y = W x for n tokens: the activations quantized once per call, then tiles
// of up to Q::kTileTokens tokens, chunks of 24 rows with every token group (so a chunk's
// weights come from memory once and from L1/L2 for the other groups).
template <class Q, DType D>
void linear_rows_typed(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1) {
  constexpr int NT = Q::kTileTokens;
  constexpr int64_t kRowChunk = 24;
  constexpr bool k8 = int8_activations(D);
  const int64_t cols = w.cols, sblocks = (cols + kXBlock - 1) / kXBlock;
  thread_local std::vector<int16_t> xi;
  thread_local std::vector<int8_t> x8;
  thread_local std::vector<float> dx;
  thread_local std::vector<int32_t> isum;
  thread_local std::vector<float> bsum16, bsum32;
  thread_local std::vector<QTokens> toks;
  thread_local std::vector<int16_t> xsum;
  constexpr int64_t kSum = xsum_cols(D);
  if (k8 && int64_t(x8.size()) < n * cols) x8.resize(size_t(n * cols));
  if (k8 && int64_t(xsum.size()) < n * (cols / kSum)) xsum.resize(size_t(n * (cols / kSum)));
  if (!k8 && int64_t(xi.size()) < n * cols) xi.resize(size_t(n * cols));
  if (int64_t(dx.size()) < n * sblocks) dx.resize(size_t(n * sblocks));
  if (int64_t(isum.size()) < cols / 16) isum.resize(size_t(cols / 16));
  if (int64_t(bsum16.size()) < n * (cols / 16)) bsum16.resize(size_t(n * (cols / 16)));
  if (int64_t(bsum32.size()) < n * (cols / 32)) bsum32.resize(size_t(n * (cols / 32)));
  if (int64_t(toks.size()) < n) toks.resize(size_t(n));
  for (int64_t t = 0; t < n; ++t) {
    float* b16 = bsum16.data() + t * (cols / 16);
    float* b32 = bsum32.data() + t * (cols / 32);
    float* d = dx.data() + t * sblocks;
    if constexpr (k8) {
      quantize_x<Q>(x + t * cols, cols, activation_max(D), x8.data() + t * cols, d, isum.data(), b16, b32);
      int16_t* q = xsum.data() + t * (cols / kSum);
      for (int64_t j = 0; j < cols / kSum; ++j) {
        int32_t v = 0;
        for (int64_t k = j * kSum / 16; k < (j + 1) * kSum / 16; ++k) v += isum[size_t(k)];
        q[j] = int16_t(v);  // at most 32 x 127
      }
      toks[size_t(t)] = {nullptr, x8.data() + t * cols, q, d, b16, b32};
    } else {
      quantize_x<Q>(x + t * cols, cols, activation_max(D), xi.data() + t * cols, d, isum.data(), b16, b32);
      toks[size_t(t)] = {xi.data() + t * cols, nullptr, nullptr, d, b16, b32};
    }
  }
  const int64_t groups = (n + NT - 1) / NT, g = groups > 0 ? (n + groups - 1) / groups : 1;
  // With several token groups each chunk's weights are decoded once into a panel (24 rows of
  // int16: 336 KiB at 7168 columns, in L2) instead of once per group; the 8-bit tiles decode
  // in registers (a few instructions per 64 weights) and take no panel.
  using Prep = typename Fmt<Q, D>::Prep;
  thread_local std::vector<int16_t> pw;
  thread_local std::vector<Prep> pp;
  Panel<Prep> panel;
  if (groups > 1 && !k8) {
    const int64_t nblocks = cols / Fmt<Q, D>::kElems;
    if (int64_t(pw.size()) < kRowChunk * cols) pw.resize(size_t(kRowChunk * cols));
    if (int64_t(pp.size()) < kRowChunk * nblocks) pp.resize(size_t(kRowChunk * nblocks));
    panel = {pw.data(), pp.data(), cols};
  }
  for (int64_t rc = r0; rc < r1; rc += kRowChunk) {
    const int64_t rce = r1 - rc < kRowChunk ? r1 : rc + kRowChunk;
    if (panel.w != nullptr) decode_panel<Q, D>(w, rc, rce, pw.data(), pp.data());
    for (int64_t t = 0; t < n; t += g)
      tile_rows_any<Q, D, NT>(int(n - t < g ? n - t : g), w, rc, rce, toks.data() + t, y + t * w.rows, panel);
  }
}

// Whether linear_rows below computes `w`'s dtype.
static inline bool supported(DType d) {
  switch (d) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

template <class Q>
void linear_rows(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1) {
  switch (w.dtype) {
    case DType::Q8_0: return linear_rows_typed<Q, DType::Q8_0>(w, x, y, n, r0, r1);
    case DType::Q4_0: return linear_rows_typed<Q, DType::Q4_0>(w, x, y, n, r0, r1);
    case DType::Q4_1: return linear_rows_typed<Q, DType::Q4_1>(w, x, y, n, r0, r1);
    case DType::Q5_0: return linear_rows_typed<Q, DType::Q5_0>(w, x, y, n, r0, r1);
    case DType::Q5_1: return linear_rows_typed<Q, DType::Q5_1>(w, x, y, n, r0, r1);
    case DType::Q2_K: return linear_rows_typed<Q, DType::Q2_K>(w, x, y, n, r0, r1);
    case DType::Q3_K: return linear_rows_typed<Q, DType::Q3_K>(w, x, y, n, r0, r1);
    case DType::Q4_K: return linear_rows_typed<Q, DType::Q4_K>(w, x, y, n, r0, r1);
    case DType::Q5_K: return linear_rows_typed<Q, DType::Q5_K>(w, x, y, n, r0, r1);
    case DType::Q6_K: return linear_rows_typed<Q, DType::Q6_K>(w, x, y, n, r0, r1);
    default: return;
  }
}

}  // namespace dsv3::kernels::simd::qblocks
