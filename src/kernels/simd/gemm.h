// The many-token linear (prefill): y[t, r] = sum_c W[r, c] x[t, c] as a cache-blocked GEMM,
// written once against an ISA's traits V and instantiated in each ISA's translation unit.
//
// Numerics, and why the layout is unusual. The decode kernel (simd/linear.h) accumulates column
// c of a row in vector lane c % L (L = V::kLanes), one FMA chain per lane in increasing c, then
// sums the L lanes by a fixed halving tree. The model needs a batched call to give the same bits
// as one token at a time (speculative decoding compares them), so this GEMM computes exactly
// those L chains and that tree: it is L independent GEMMs, one per lane l, over the strided
// columns c = l, l + L, l + 2L, ... (J = ceil(cols / L) steps each), whose results are summed
// by the same tree at the end. Each of these lane GEMMs is an ordinary outer-product GEMM:
// a register tile of G = kGemmRowRegs * L rows (vectors) x NT = kGemmTokens tokens
// (broadcasts) accumulates over j, so each FMA needs 1/NT of a weight vector load and 1/G of
// a broadcast, instead of the dot-product tile's one load per four FMAs.
//
// Data flow. Activations are repacked once per call (pack_x, shared by all threads) into
// [token tile][lane][j][NT]. Each thread takes MC rows at a time and decodes them once into a
// float32 panel [lane][row group][j][G] (the decode of linear.h, then an L x L transpose); every
// block of NB tokens then runs over the panel, lane after lane, KJ steps at a time. Sizes
// (AVX-512): a register tile's weights for KJ steps (16 KiB) and its activations (6 KiB) sit in
// L1; one lane's KJ-step panel for all MC rows (64 KiB) and the partial sums (below) in L2.
// What reaches L3 or memory is the packed activations, once per MC rows, and the decoded panel,
// once per NB tokens: MC and NB were chosen by measurement (docs/kernels.md).
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "kernels/matrix.h"
#include "kernels/simd/linear.h"

namespace dsv3::kernels::simd {

template <class V>
struct GemmShape {
  static constexpr int L = V::kLanes;
  static constexpr int G = V::kGemmRowRegs * V::kLanes;  // rows of one register tile
  static constexpr int NT = V::kGemmTokens;               // tokens of one register tile
  // Rows decoded per panel. The packed activations are read once per panel, so MC sets their
  // traffic (2 / MC bytes per FLOP): 64 rows ran n = 512 at ~110 GFLOP/s here, 128 at ~140;
  // 192 and 256 were no better, and the panel (MC x cols floats, 3.5 MiB at 7168) grows.
  static constexpr int64_t MC = 128;
  // Tokens per pass over the panel (which is re-read from L3 once per pass), bounded by the
  // partial sums kSlots x NB x MC floats (240 KiB) that must stay in L2.
  static constexpr int64_t NB = 8 * NT;
  // Steps (of L columns) per pass of a register tile: its weights (G x KJ floats, 16 KiB for
  // AVX-512) and activations (NT x KJ, 6 KiB) stay in L1 between the tiles that reuse them.
  static constexpr int64_t KJ = 128;
  // Partial-sum buffers: the lane tree is reduced as its leaves arrive (gemm_rows_typed).
  static constexpr int kSlots = L == 16 ? 5 : L == 8 ? 4 : 0;
  static_assert(MC % G == 0 && NT <= L && kSlots > 0);
  // Floats between consecutive lanes' parts of the panel: MC x J, padded by one cache line so
  // that the L stores of a decoded L x L block (one per lane) do not all map to the same L1 set
  // (unpadded they are 4 KiB multiples apart when J is even).
  static int64_t lane_stride(int64_t J) { return MC * J + 64 / int64_t(sizeof(float)); }
};

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Floats of the packed activations for n tokens of `cols` columns.
template <class V>
int64_t gemm_packed_x_floats(const Matrix& w, int64_t n) {
  using S = GemmShape<V>;
  return ceil_div(n, S::NT) * S::NT * ceil_div(w.cols, S::L) * S::L;
}

// Floats of per-thread scratch gemm_rows needs: the weight panel, the partial sums and the
// scaled activations of FP8 (gemm_scale_x).
template <class V>
int64_t gemm_scratch_floats(const Matrix& w) {
  using S = GemmShape<V>;
  const int64_t cols = w.cols;
  return S::lane_stride(ceil_div(cols, S::L)) * S::L + S::kSlots * S::NB * S::MC + S::NB * S::KJ +
         ceil_div(cols, S::L) * S::L;
}

// Token tiles [tile0, tile1) of x [n, cols] into xp: xp[((tile * L + l) * J + j) * NT + i] =
// x[tile * NT + i, j * L + l], zero past the last token and column (the decode kernel's masked
// loads read zeros there too).
template <class V>
void gemm_pack_x(const Matrix& w, const float* x, int64_t n, int64_t tile0, int64_t tile1, float* xp) {
  using S = GemmShape<V>;
  const int64_t cols = w.cols;
  using Reg = typename V::Reg;
  constexpr int L = S::L, NT = S::NT;
  const int64_t J = ceil_div(cols, L);
  for (int64_t tile = tile0; tile < tile1; ++tile) {
    const int64_t t0 = tile * NT;
    for (int64_t j = 0; j < J; ++j) {
      const int cnt = cols - j * L < L ? int(cols - j * L) : L;
      Reg v[L];
      for (int i = 0; i < L; ++i) v[i] = i < NT && t0 + i < n ? V::load_f32(x + (t0 + i) * cols + j * L, cnt) : V::zero();
      V::transpose(v);
      for (int l = 0; l < L; ++l) V::store_f32(xp + ((tile * L + l) * J + j) * NT, v[l], NT);
    }
  }
}

// Rows [ra, ra + m) (m <= MC) of W decoded into the panel wp[l * lane_stride(J) + (g * J + j) * G
// + i] = W[ra + g * G + i, j * L + l]: exactly the float32 values, zero padding included, that the
// decode kernel's tile() multiplies (FP8: the code's value x 2^-120; the scales go into the
// activations, gemm_scale_x).
template <class V, DType D>
void gemm_pack_w(const Matrix& w, int64_t ra, int64_t m, float* wp) {
  using S = GemmShape<V>;
  using Reg = typename V::Reg;
  constexpr int L = S::L, G = S::G;
  const int64_t cols = w.cols, J = ceil_div(cols, L), row_bytes = cols * elem_bytes<D>(), LS = S::lane_stride(J);
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  for (int64_t i0 = 0; i0 < m; i0 += L) {  // L rows at a time: one L x L transpose per column group
    const int rows = m - i0 < L ? int(m - i0) : L;
    const int64_t g = i0 / G, gi = i0 % G;
    const uint8_t* row[L];
    for (int i = 0; i < rows; ++i) row[i] = data + size_t(ra + i0 + i) * size_t(row_bytes);
    for (int64_t j = 0; j < J; ++j) {
      const int64_t c = j * L;
      const int cnt = cols - c < L ? int(cols - c) : L;
      Reg v[L];
      for (int i = 0; i < L; ++i) {
        // The L rows are one sequential stream, as for the decode tiles; into L2 only, since
        // rows a power of two apart share a few L1 sets (1-thread prefill of `medium` +2-4%).
        if constexpr (V::kPrefetchBytes > 0)
          if (rows == L) prefetch_tile<L, 2>(row[0], i, row_bytes, c * elem_bytes<D>(), L * elem_bytes<D>(), V::kPrefetchBytes);
        v[i] = i < rows ? load_weights<V, D>(row[i], c, cnt) : V::zero();
      }
      V::transpose(v);
      for (int l = 0; l < L; ++l) V::store_f32(wp + l * LS + (g * J + j) * G + gi, v[l], L);
    }
  }
  // Rows of the last register tile past m: zero, so that the tile computes on finite values.
  for (int64_t i0 = ceil_div(m, L) * L; i0 % G != 0; i0 += L)
    for (int l = 0; l < L; ++l)
      for (int64_t j = 0; j < J; ++j) V::store_f32(wp + l * LS + (i0 / G * J + j) * G + i0 % G, V::zero(), L);
}

// FP8: lane l, steps [j0, j0 + kj) of packed token tiles [tile0, tile0 + ntiles) times the
// factors f of the panel's scale block (fp8_x_factors), into xs[tile][jj][NT] (tiles KJ x NT
// floats apart): the same products as pack_tokens_scaled's x' for the decode kernel.
template <class V>
void gemm_scale_x(int64_t cols, const float* f, const float* xp, int64_t tile0, int64_t ntiles, int l, int64_t j0,
                  int64_t kj, float* xs) {
  using S = GemmShape<V>;
  constexpr int L = S::L, NT = S::NT;
  const int64_t J = ceil_div(cols, L);
  for (int64_t jj = 0; jj < kj; ++jj) {
    const typename V::Reg fv = V::set1(f[(j0 + jj) * L + l]);
    for (int64_t k = 0; k < ntiles; ++k)
      V::store_f32(xs + (k * S::KJ + jj) * NT,
                   V::mul(V::load_f32(xp + (((tile0 + k) * L + l) * J + j0 + jj) * NT, NT), fv), NT);
  }
}

// One register tile of one lane: c[t * ldc + i] (+)= sum_j wp[j * G + i] * xp[j * NT + t] for
// i < G, t < NTT, j < kj, accumulated in increasing j onto zero, or onto c if `resume` (the
// chain continues exactly: a float stored and reloaded is the same float).
template <class V, int NTT>
void gemm_micro(const float* wp, const float* xp, int64_t kj, float* c, int64_t ldc, bool resume) {
  using S = GemmShape<V>;
  using Reg = typename V::Reg;
  constexpr int R = V::kGemmRowRegs, L = S::L, G = S::G, NT = S::NT;
  Reg acc[R][NTT];
  for (int k = 0; k < R; ++k)
    for (int t = 0; t < NTT; ++t) acc[k][t] = resume ? V::load_f32(c + t * ldc + k * L, L) : V::zero();
  for (int64_t j = 0; j < kj; ++j) {
    Reg wv[R];
    for (int k = 0; k < R; ++k) wv[k] = V::load_f32(wp + j * G + k * L, L);
    for (int t = 0; t < NTT; ++t) {
      const Reg xb = V::set1(xp[j * NT + t]);
      for (int k = 0; k < R; ++k) acc[k][t] = V::fma(wv[k], xb, acc[k][t]);
    }
  }
  for (int t = 0; t < NTT; ++t)
    for (int k = 0; k < R; ++k) V::store_f32(c + t * ldc + k * L, acc[k][t], L);
}

// gemm_micro for a run-time tile width nt <= NT (the last token tile).
template <class V, int NTT>
void gemm_micro_any(int nt, const float* wp, const float* xp, int64_t kj, float* c, int64_t ldc, bool resume) {
  if constexpr (NTT > 1)
    if (nt < NTT) return gemm_micro_any<V, NTT - 1>(nt, wp, xp, kj, c, ldc, resume);
  gemm_micro<V, NTT>(wp, xp, kj, c, ldc, resume);
}

// The decode kernel's lane tree for a block of partial sums: pass(l, acc) computes lane l's
// sums into acc ([token][row], `ld` floats apart, nb tokens x mv rows, mv a multiple of L), and
// the lanes are combined as V::reduce_add combines them. That tree (halves added pairwise: lane
// i + lane i + L/2, then + L/4, ...) has the lanes in bit-reversed order as its leaves, left to
// right, so the lanes are computed in that order and merged like a binary counter: a stack of at
// most log2(L) + 1 buffers (`slots`, `slot_floats` apart) instead of L. The sum ends in slots.
template <class V, int kSlots, class Pass>
void lane_tree_sum(float* slots, int64_t slot_floats, int64_t nb, int64_t mv, int64_t ld, const Pass& pass) {
  constexpr int L = V::kLanes;
  int depth = 0, level[kSlots];
  for (int k = 0; k < L; ++k) {
    int l = 0;
    for (int b = 1, kk = k; b < L; b <<= 1, kk >>= 1) l = (l << 1) | (kk & 1);
    pass(l, slots + depth * slot_floats);
    level[depth++] = 0;
    while (depth >= 2 && level[depth - 1] == level[depth - 2]) {
      float* a = slots + (depth - 2) * slot_floats;
      const float* b = slots + (depth - 1) * slot_floats;
      for (int64_t t = 0; t < nb; ++t)
        for (int64_t i = 0; i < mv; i += L)
          V::store_f32(a + t * ld + i, V::add(V::load_f32(a + t * ld + i, L), V::load_f32(b + t * ld + i, L)), L);
      --depth;
      ++level[depth - 1];
    }
  }
}

// Tokens [t0, t1) x rows [r0, r1) of y (row stride w.rows) from packed activations xp.
// t0 is a multiple of kGemmTokens. `scratch` holds gemm_scratch_floats(w) floats.
template <class V, DType D>
void gemm_rows_typed(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1,
                     float* scratch) {
  using S = GemmShape<V>;
  constexpr int L = S::L, G = S::G, NT = S::NT;
  constexpr int64_t MC = S::MC, NB = S::NB, KJ = S::KJ;
  const int64_t J = ceil_div(w.cols, L);
  float* wp = scratch;
  float* slots = scratch + S::lane_stride(J) * L;  // S::kSlots partial sums, each [token in block][row in panel]
  float* xs = slots + S::kSlots * NB * MC;  // FP8: activations scaled for the panel's rows
  float* fx = xs + NB * KJ;                 // FP8: their factors
  for (int64_t ra = r0; ra < r1;) {
    int64_t m = r1 - ra < MC ? r1 - ra : MC;
    if constexpr (D == DType::F8_E4M3) {
      m = fp8_block_end(w, ra, ra + m) - ra;  // one scale block
      fp8_x_factors(w, ra, kFp8XUnit, L, fx);
    }
    const int64_t ng = ceil_div(m, G), mv = ceil_div(m, L) * L;
    gemm_pack_w<V, D>(w, ra, m, wp);
    for (int64_t tb = t0; tb < t1; tb += NB) {
      const int64_t nb = t1 - tb < NB ? t1 - tb : NB;
      lane_tree_sum<V, S::kSlots>(slots, NB * MC, nb, mv, MC, [&](int l, float* acc) {
        for (int64_t j0 = 0; j0 < J; j0 += KJ) {
          const int64_t kj = J - j0 < KJ ? J - j0 : KJ;
          const float* xl = xp + ((tb / NT * L + l) * J + j0) * NT;  // token tiles L * J * NT apart
          int64_t tile_stride = L * J * NT;
          if constexpr (D == DType::F8_E4M3) {
            gemm_scale_x<V>(w.cols, fx, xp, tb / NT, ceil_div(nb, NT), l, j0, kj, xs);
            xl = xs;
            tile_stride = KJ * NT;
          }
          for (int64_t t = 0; t < nb; t += NT) {
            const float* xt = xl + t / NT * tile_stride;
            const int nt = nb - t < NT ? int(nb - t) : NT;
            for (int64_t g = 0; g < ng; ++g)
              gemm_micro_any<V, NT>(nt, wp + l * S::lane_stride(J) + (g * J + j0) * G, xt, kj, acc + t * MC + g * G, MC,
                                    j0 > 0);
          }
        }
      });
      for (int64_t t = 0; t < nb; ++t)
        for (int64_t i = 0; i < m; i += L) {
          typename V::Reg v = V::load_f32(slots + t * MC + i, L);
          if constexpr (D == DType::F8_E4M3) v = V::mul(v, V::set1(fp8_post<V>()));  // as tile()
          V::store_f32(y + (tb + t) * w.rows + ra + i, v, m - i < L ? int(m - i) : L);
        }
    }
    ra += m;
  }
}

// Whether gemm_rows computes `w`: a known dtype and FP8 scales the vector code can carry.
// Otherwise linear_rows serves every n.
template <class V>
bool gemm_supports(const Matrix& w) {
  if (w.cols == 0) return false;
  switch (w.dtype) {
    case DType::F32:
    case DType::BF16:
    case DType::F16:
      return true;
    case DType::F8_E4M3:
      return fp8_scales_fit<V>(w);
    default:
      return false;
  }
}

template <class V>
void gemm_rows(const Matrix& w, const float* xp, float* y, int64_t t0, int64_t t1, int64_t r0, int64_t r1,
               float* scratch) {
  switch (w.dtype) {
    case DType::F32: return gemm_rows_typed<V, DType::F32>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::BF16: return gemm_rows_typed<V, DType::BF16>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::F16: return gemm_rows_typed<V, DType::F16>(w, xp, y, t0, t1, r0, r1, scratch);
    case DType::F8_E4M3: return gemm_rows_typed<V, DType::F8_E4M3>(w, xp, y, t0, t1, r0, r1, scratch);
    default: return V::unsupported(w.dtype);
  }
}

}  // namespace dsv3::kernels::simd
