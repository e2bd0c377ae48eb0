// The many-token linear (prefill) for weights in ggml block formats: a GEMM that gives every
// (row, token) the bits of the decode kernel (simd/qblocks.h: tile), as the float and BF16
// GEMMs do for theirs (variant.h: Gemm). Written once against an ISA's integer traits Q
// (avx512/qtraits.h, avx2/qtraits.h: Q's kGemm* constants pick the register tile) and
// instantiated in that ISA's translation unit, like simd/qblocks.h; the avx512bf16 variant
// forwards block formats to avx512's.
//
// What the decode kernel computes for row r and token t, and so what this computes:
//   - the token's activations quantized per 256 columns (quantize_x: int16 or 8-bit xi, dx, sums
//     of xi; kept as int16 here, the 8-bit formats' in lane_order);
//   - per weight block b and lane l (Q::kLanes lanes; lane l sums columns 2l, 2l + 1 of each
//     Q::kR16 int16 of a 32-column group, or for the 8-bit formats 4l..4l+3 of each 4 x
//     Q::kLanes), the exact int32 sum is[l] of the block's products,
//     then acc[l] = fma(float(is[l]), d_b x dx, acc[l]), blocks in order;
//   - per block the minima term, sacc = fma(term_b, dx, sacc), blocks in order;
//   - y = reduce_add(acc) + sacc.
// The integer sums are exact, so any order of them gives the same bits; the float operations
// are done one for one, in the same order, on the same values.
//
// How, for speed. The activations are quantized once per call (pack_x, shared by the
// threads; the decode path quantizes them once per thread share) into tiles of NT tokens:
// each token's xi, and transposed per tile (a token per float lane) its dx and its sums of
// 16 and 32 xi. A thread decodes MC = Q::kGemmPanelRows rows once into an int16 panel (decode_panel, the values the
// decode tiles multiply), then for each token tile:
//   - the minima terms of every row for all the tile's tokens at once, a token per lane: the
//     scalar twin's 8- or 16-wide dot product as elementwise operations across tokens, in its
//     order (tree8 below; for the 8-bit formats every product and sum is an exact integer, so
//     the tiles' integer dots give the same floats);
//   - the factors d_b x dx per block, row and token, a token per lane (one multiply per row,
//     block and Q::kLanes tokens, instead of one per row, block and token);
//   - register tiles of RB rows x NTT tokens (Q::kGemmTileRows x Q::kGemmTileTokens): RB x NTT
//     int32 block sums and float accumulators, per Q::kR16 columns RB weight and NTT activation
//     loads for RB x NTT VPMADDWD + VPADDD, per block RB x NTT conversions and FMAs with
//     broadcast factors, over passes of Q::kGemmPassCols columns with the float accumulators
//     parked in L1 between passes.
//   AVX-512: 4 rows x 3 tokens, the accumulators 24 of the 32 zmm. AVX2 (8 lanes, 16 ymm): the
//   same 4 x 3 over half-groups of 16 columns, its float accumulators in L1 (avx2/qtraits.h).
// Sizes (AVX-512; AVX2's 6-token tiles halve the activations): the panel is MC x cols int16
// (448 KiB at 7168 columns, in L2 with a tile's activations, 168 KiB); per pass a row group's
// weights (8 KiB), the tile's activations (24 KiB) and 4 rows' factors (256 bytes per block)
// sit in L1. The float work per block (a conversion and an FMA per 32 columns for the
// 32-value formats, per 256 for the K-quants) is the decode kernel's numerics and bounds the
// 32-value formats at ~60% of the int16 dot-product peak (AVX-512; docs/kernels.md).
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "kernels/block_activations.h"
#include "kernels/matrix.h"
#include "kernels/simd/qblocks.h"

namespace dsv3::kernels::simd::qgemm {

// Every function here is a template over Q or static, as in simd/qblocks.h: none compiled for
// one ISA can be merged by the linker into another's code.

using qblocks::Fmt;
using qblocks::kXBlock;

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Packed activations of one token tile of NT tokens, in floats (64-byte multiples):
// xi [NT][cols] int16 (xstride floats per token), then dx [sblocks][L], bsum16 [cols / 16][L],
// bsum32 [cols / 32][L], token i of the tile in lane i (L = Q::kLanes >= NT, the rest zero).
template <class Q>
struct Layout {
  static constexpr int kTokLanes = Q::kLanes;
  int64_t cols, sblocks, xstride, dx_at, b16_at, b32_at, tile;
  Layout(int64_t c, int nt) : cols(c), sblocks(ceil_div(c, kXBlock)) {
    xstride = ceil_div(cols / 2, 16) * 16 + 16;  // + a cache line: tokens' rows 4 KiB apart would share L1 sets
    dx_at = nt * xstride;
    b16_at = dx_at + ceil_div(sblocks * kTokLanes, 16) * 16;
    b32_at = b16_at + ceil_div(cols / 16 * kTokLanes, 16) * 16;
    tile = b32_at + ceil_div(cols / 32 * kTokLanes, 16) * 16;
  }
};

template <class Q, int NT>
int64_t packed_x_floats(const Matrix& w, int64_t n) {
  static_assert(NT <= Q::kLanes, "a token tile's transposed values are one vector");
  return ceil_div(n, NT) * Layout<Q>(w.cols, NT).tile;
}

// The formats with 8-bit activations (kernels/block_activations.h): their decode tiles' lane l
// sums columns 4l..4l+3 of each 4L (L = Q::kLanes), where VPMADDWD on int16 sums columns 2l,
// 2l + 1 of each 2L. So the GEMM keeps its int16 arithmetic (the same exact products) on weights
// and activations both put in this order: per 4L columns, the column pairs (2p, 2p + 1) with p
// even, then those with p odd. VPMADDWD's lane l then takes columns 4l, 4l + 1 from the first 2L
// and 4l + 2, 4l + 3 from the second: the decode tiles' integer sums, lane for lane.
// (Q::lane_order4L: one window, two permutes of 32-bit pairs per window.)
template <class Q>
void lane_order(int16_t* v, int64_t n) {
  for (int64_t c = 0; c + 4 * Q::kLanes <= n; c += 4 * Q::kLanes) Q::lane_order4L(v + c);
}

// Token tiles [tile0, tile1) of x [n, cols]: quantize_x per token, exactly as the decode kernel
// calls it; tokens past n are zero.
template <class Q, int NT>
void pack_x(const Matrix& w, const float* x, int64_t n, int64_t tile0, int64_t tile1, float* xp) {
  const Layout<Q> L(w.cols, NT);
  constexpr int kTokLanes = Layout<Q>::kTokLanes;
  const int64_t cols = w.cols;
  thread_local std::vector<float> dx, b16, b32;
  thread_local std::vector<int32_t> isum;
  dx.resize(size_t(L.sblocks));
  b16.resize(size_t(cols / 16));
  b32.resize(size_t(cols / 32));
  isum.resize(size_t(cols / 16));
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    float* base = xp + tile * L.tile;
    std::memset(base + L.dx_at, 0, size_t(L.tile - L.dx_at) * sizeof(float));
    for (int i = 0; i < NT; ++i) {
      const int64_t t = tile * NT + i;
      int16_t* xi = reinterpret_cast<int16_t*>(base + i * L.xstride);
      if (t >= n) {
        std::memset(xi, 0, size_t(cols) * sizeof(int16_t));
        continue;
      }
      qblocks::quantize_x<Q>(x + t * cols, cols, activation_max(w.dtype), xi, dx.data(), isum.data(), b16.data(),
                             b32.data());
      if (int8_activations(w.dtype)) lane_order<Q>(xi, cols);
      for (int64_t s = 0; s < L.sblocks; ++s) base[L.dx_at + s * kTokLanes + i] = dx[size_t(s)];
      for (int64_t j = 0; j < cols / 16; ++j) base[L.b16_at + j * kTokLanes + i] = b16[size_t(j)];
      for (int64_t j = 0; j < cols / 32; ++j) base[L.b32_at + j * kTokLanes + i] = b32[size_t(j)];
    }
  }
}

// ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)): the scalar twin's tree8.
template <class Q>
typename Q::F tree8(const typename Q::F (&v)[8]) {
  return Q::add_exact(Q::add_exact(Q::add_exact(v[0], v[4]), Q::add_exact(v[2], v[6])),
                      Q::add_exact(Q::add_exact(v[1], v[5]), Q::add_exact(v[3], v[7])));
}

// The minima term of block `blk` (its prep p) for Q::kLanes tokens: Fmt::term, a token per lane.
template <class Q, DType D>
typename Q::F term(const uint8_t* blk, const typename Fmt<Q, D>::Prep& p, const float* base, const Layout<Q>& L,
                   int64_t c0) {
  constexpr int kTokLanes = Layout<Q>::kTokLanes;
  using V = typename Q::F;
  if constexpr (D == DType::Q4_1 || D == DType::Q5_1) {
    return Q::mul_exact(Q::set1(p.m), Q::loadf(base + L.b32_at + c0 / 32 * kTokLanes));
  } else if constexpr (D == DType::Q4_K || D == DType::Q5_K) {
    V v[8];  // products m[j] x bsum32[j], then the 8-lane tree (exact integers)
    for (int j = 0; j < 8; ++j)
      v[j] = Q::mul_exact(Q::set1(float(p.m[j])), Q::loadf(base + L.b32_at + (c0 / 32 + j) * kTokLanes));
    return Q::mul_exact(Q::set1(-p.dmin), tree8<Q>(v));
  } else if constexpr (D == DType::Q3_K) {
    // 4 x sum_j sc[j] x bsum16[j], every product and sum an exact integer
    V v = Q::zero();
    const float* b = base + L.b16_at + c0 / 16 * kTokLanes;
    for (int j = 0; j < 16; ++j) v = Q::fma(Q::set1(float(4 * p.sc[j])), Q::loadf(b + j * kTokLanes), v);
    return Q::mul_exact(Q::set1(-p.d), v);
  } else {
    static_assert(D == DType::Q2_K);
    V v[8];  // fma(m[8 + j], b[8 + j], m[j] x b[j]), then the 8-lane tree (exact integers)
    const float* b = base + L.b16_at + c0 / 16 * kTokLanes;
    for (int j = 0; j < 8; ++j)
      v[j] = Q::fma(Q::set1(float(blk[8 + j] >> 4)), Q::loadf(b + (8 + j) * kTokLanes),
                    Q::mul_exact(Q::set1(float(blk[j] >> 4)), Q::loadf(b + j * kTokLanes)));
    return Q::mul_exact(Q::set1(-p.dmin), tree8<Q>(v));
  }
}

// sacc[i * L + t] for the panel's m rows and the tile's tokens: the decode kernel's chain
// sacc = fma(term_b, dx, sacc) over the blocks (zero for formats without minima).
template <class Q, DType D>
void minima(const Matrix& w, int64_t ra, int64_t m, const typename Fmt<Q, D>::Prep* pp, const float* base,
            const Layout<Q>& L, float* sacc) {
  using F = Fmt<Q, D>;
  constexpr int kTokLanes = Layout<Q>::kTokLanes;
  const int64_t nblocks = w.cols / F::kElems, row_bytes = int64_t(w.row_bytes());
  for (int64_t i = 0; i < m; ++i) {
    typename Q::F s = Q::zero();
    if constexpr (F::kTerm) {
      const uint8_t* row = static_cast<const uint8_t*>(w.data) + (ra + i) * row_bytes;
      for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t c0 = b * F::kElems;
        const typename Q::F t = term<Q, D>(row + b * F::kBytes, pp[i * nblocks + b], base, L, c0);
        s = Q::fma(t, Q::loadf(base + L.dx_at + c0 / kXBlock * kTokLanes), s);
      }
    }
    Q::storef(sacc + i * kTokLanes, s);
  }
}

// f[(b * RB + i) * L + t] for the panel's blocks b0 + b, b < kb: d(row i, block) x dx(token
// t, the block's activation block), the factor the decode kernel computes as p.d * dx (rb <= RB
// rows; pp: row 0's prep of block b0, rows nblocks apart).
template <class Q, DType D>
void factors(const typename Fmt<Q, D>::Prep* pp, int64_t nblocks, int64_t kb, int rb, const float* base,
             const Layout<Q>& L, float* f, int64_t b0) {
  using F = Fmt<Q, D>;
  constexpr int kTokLanes = Layout<Q>::kTokLanes, RB = Q::kGemmTileRows;
  for (int64_t b = 0; b < kb; ++b) {
    const typename Q::F dx = Q::loadf(base + L.dx_at + (b0 + b) * F::kElems / kXBlock * kTokLanes);
    for (int i = 0; i < rb; ++i) Q::storef(f + (b * RB + i) * kTokLanes, Q::mul_exact(Q::set1(pp[i * nblocks + b].d), dx));
  }
}

// One register tile over blocks [b0, b1): rows pw + i x ps (i < R) of the panel, tokens xi[t]
// (t < T), factors f (column t of the factor table of blocks b0.., RB x L floats per block).
// The float accumulators start at zero (b0 == 0) or from acc[(i x NT + t) x L] (the chain
// continues exactly: a float stored and reloaded is the same float); then stored there, or, at
// the last block, y[t * ldy + i] = reduce_add(acc) + sacc[i * L + t].
template <class Q, DType D, int R, int T>
void micro(const int16_t* pw, int64_t ps, int64_t b0, int64_t b1, bool last, const int16_t* const* xi, const float* f,
           float* accs, int64_t nt, const float* sacc, float* y, int64_t ldy) {
  using F = Fmt<Q, D>;
  constexpr int G = F::kElems / 32, S = 32 / Q::kR16, kTokLanes = Layout<Q>::kTokLanes, RB = Q::kGemmTileRows;
  typename Q::F acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = b0 == 0 ? Q::zero() : Q::loadf(accs + (i * nt + t) * kTokLanes);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t c0 = b * F::kElems;
    typename Q::I32 is[R][T];
    for (int g = 0; g < G; ++g)
      for (int s = 0; s < S; ++s) {  // Q::kR16 columns of group g
        const int64_t c = c0 + 32 * g + Q::kR16 * s;
        typename Q::R16 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = Q::load_r16(xi[t] + c);
        for (int i = 0; i < R; ++i) {
          const typename Q::R16 wv = Q::load_r16(pw + i * ps + c);
          for (int t = 0; t < T; ++t)
            is[i][t] = g == 0 && s == 0 ? Q::madd(wv, xv[t]) : Q::add32(is[i][t], Q::madd(wv, xv[t]));
        }
      }
    const float* fb = f + (b - b0) * RB * kTokLanes;
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < T; ++t) acc[i][t] = Q::fma(Q::cvt(is[i][t]), Q::set1(fb[i * kTokLanes + t]), acc[i][t]);
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) {
      if (last)
        y[t * ldy + i] = Q::reduce_add(acc[i][t]) + sacc[i * kTokLanes + t];
      else
        Q::storef(accs + (i * nt + t) * kTokLanes, acc[i][t]);
    }
}

template <class Q, DType D, int R, int T>
void micro_any(int r, int t, const int16_t* pw, int64_t ps, int64_t b0, int64_t b1, bool last, const int16_t* const* xi,
               const float* f, float* accs, int64_t nt, const float* sacc, float* y, int64_t ldy) {
  if constexpr (R > 1)
    if (r < R) return micro_any<Q, D, R - 1, T>(r, t, pw, ps, b0, b1, last, xi, f, accs, nt, sacc, y, ldy);
  if constexpr (T > 1)
    if (t < T) return micro_any<Q, D, R, T - 1>(r, t, pw, ps, b0, b1, last, xi, f, accs, nt, sacc, y, ldy);
  micro<Q, D, R, T>(pw, ps, b0, b1, last, xi, f, accs, nt, sacc, y, ldy);
}

// int16 between the panel's rows: a cache line more than the columns (rows 4 KiB apart would
// share L1 sets).
static inline int64_t panel_stride(int64_t cols) { return cols + 32; }

template <class Q, DType D>
int64_t prep_floats(int64_t nblocks) {
  return ceil_div(Q::kGemmPanelRows * nblocks * int64_t(sizeof(typename Fmt<Q, D>::Prep)), int64_t(sizeof(float)));
}

// Blocks per pass of the register tiles (Q::kGemmPassCols columns: a row group's weights and a
// token tile's activations stay in L1 while every row group and token of the tile goes over
// them; the float accumulators wait in accs between passes).
template <class Q, DType D>
int64_t blocks_per_pass() {
  constexpr int64_t e = Fmt<Q, D>::kElems, kc = Q::kGemmPassCols;
  return kc / e > 0 ? kc / e : 1;
}

template <class Q, DType D>
int64_t scratch_floats_typed(const Matrix& w) {
  constexpr int64_t MC = Q::kGemmPanelRows, L = Q::kLanes;
  const int64_t nblocks = w.cols / Fmt<Q, D>::kElems;
  return MC * panel_stride(w.cols) / 2 + 16 + prep_floats<Q, D>(nblocks) + 16 +
         Q::kGemmTileRows * blocks_per_pass<Q, D>() * L + MC * L + MC * L * L;
}

// Tokens [t0, t1) (t0 a multiple of NT) x rows [r0, r1) of y (row stride w.rows).
template <class Q, DType D, int NT>
void rows_typed(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1, float* scratch) {
  using F = Fmt<Q, D>;
  using Prep = typename F::Prep;
  constexpr int64_t MC = Q::kGemmPanelRows;
  constexpr int RB = Q::kGemmTileRows, NTT = Q::kGemmTileTokens, kTokLanes = Layout<Q>::kTokLanes;
  const Layout<Q> L(w.cols, NT);
  const int64_t cols = w.cols, nblocks = cols / F::kElems, kb = blocks_per_pass<Q, D>();
  int16_t* pw = reinterpret_cast<int16_t*>(scratch);
  const int64_t ps = panel_stride(cols);
  Prep* pp = reinterpret_cast<Prep*>(scratch + MC * ps / 2 + 16);
  float* f = scratch + MC * ps / 2 + 16 + prep_floats<Q, D>(nblocks) + 16;
  float* sacc = f + RB * kb * kTokLanes;
  float* accs = sacc + MC * kTokLanes;  // [row][token][L]
  for (int64_t ra = r0; ra < r1; ra += MC) {
    const int64_t m = r1 - ra < MC ? r1 - ra : MC;
    for (int64_t i = 0; i < m; ++i) {
      qblocks::decode_panel<Q, D>(w, ra + i, ra + i + 1, pw + i * ps, pp + i * nblocks);
      if constexpr (int8_activations(D)) lane_order<Q>(pw + i * ps, cols);
    }
    for (int64_t tile = t0 / NT; tile * NT < t1; ++tile) {
      const float* base = xp + tile * L.tile;
      const int64_t tt = tile * NT, nt = t1 - tt < NT ? t1 - tt : NT;
      minima<Q, D>(w, ra, m, pp, base, L, sacc);
      const int16_t* xi[NT];
      for (int t = 0; t < NT; ++t) xi[t] = reinterpret_cast<const int16_t*>(base + t * L.xstride);
      for (int64_t b0 = 0; b0 < nblocks; b0 += kb) {
        const int64_t b1 = nblocks - b0 < kb ? nblocks : b0 + kb;
        for (int64_t i0 = 0; i0 < m; i0 += RB) {
          const int rb = m - i0 < RB ? int(m - i0) : RB;
          factors<Q, D>(pp + i0 * nblocks + b0, nblocks, b1 - b0, rb, base, L, f, b0);
          for (int64_t ts = 0; ts < nt; ts += NTT) {
            const int tn = nt - ts < NTT ? int(nt - ts) : NTT;
            micro_any<Q, D, RB, NTT>(rb, tn, pw + i0 * ps, ps, b0, b1, b1 == nblocks, xi + ts, f + ts,
                                     accs + (i0 * nt + ts) * kTokLanes, nt, sacc + i0 * kTokLanes + ts,
                                     y + (tt + ts) * w.rows + ra + i0, w.rows);
          }
        }
      }
    }
  }
}

template <class Q>
int64_t scratch_floats(const Matrix& w) {
  switch (w.dtype) {
    case DType::Q8_0: return scratch_floats_typed<Q, DType::Q8_0>(w);
    case DType::Q4_0: return scratch_floats_typed<Q, DType::Q4_0>(w);
    case DType::Q4_1: return scratch_floats_typed<Q, DType::Q4_1>(w);
    case DType::Q5_0: return scratch_floats_typed<Q, DType::Q5_0>(w);
    case DType::Q5_1: return scratch_floats_typed<Q, DType::Q5_1>(w);
    case DType::Q2_K: return scratch_floats_typed<Q, DType::Q2_K>(w);
    case DType::Q3_K: return scratch_floats_typed<Q, DType::Q3_K>(w);
    case DType::Q4_K: return scratch_floats_typed<Q, DType::Q4_K>(w);
    case DType::Q5_K: return scratch_floats_typed<Q, DType::Q5_K>(w);
    case DType::Q6_K: return scratch_floats_typed<Q, DType::Q6_K>(w);
    default: return 0;
  }
}

template <class Q, int NT>
void rows(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1, float* scratch) {
  switch (w.dtype) {
    case DType::Q8_0: return rows_typed<Q, DType::Q8_0, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q4_0: return rows_typed<Q, DType::Q4_0, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q4_1: return rows_typed<Q, DType::Q4_1, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q5_0: return rows_typed<Q, DType::Q5_0, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q5_1: return rows_typed<Q, DType::Q5_1, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q2_K: return rows_typed<Q, DType::Q2_K, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q3_K: return rows_typed<Q, DType::Q3_K, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q4_K: return rows_typed<Q, DType::Q4_K, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q5_K: return rows_typed<Q, DType::Q5_K, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::Q6_K: return rows_typed<Q, DType::Q6_K, NT>(w, xp, y, t0, t1, r0, r1, scratch);
    default: return;
  }
}

}  // namespace dsv3::kernels::simd::qgemm
