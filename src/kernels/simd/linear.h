// Weight-reading kernels (linear, its transpose, dequantization) written once against a vector
// ISA's traits V (avx2/traits.h, avx512/traits.h) and instantiated in each ISA's own translation
// unit, compiled with that ISA's flags. Everything here is a template over V or has internal
// linkage (static), so no function compiled for one ISA can be picked by the linker for another
// (no ODR-merged inline helpers).
//
// Numerics: BF16/F16/F32 weights are converted exactly and FMA'd into float32 activations. FP8
// weights are decoded to their code's value (times 2^-120, exact) and FMA'd into activations
// pre-scaled by the weight's block scale: x'[c] = x[c] * (scale(row block, c) * 2^64), rounded
// once, per 128-row block of weights (see pack_tokens_scaled); the row's sum is multiplied by
// 2^56 (exact) at the end. So an FP8 weight costs a decode and an FMA, no multiply by its scale.
// Column c of a row accumulates in lane c % kLanes, lanes summed by a fixed tree at the end, so
// a row's result never depends on which other rows or tokens were computed with it, on n, or on
// the thread count.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "kernels/matrix.h"
#include "kernels/scalar/scalar.h"

namespace dsv3::kernels::simd {

// Token block for many-token products, sized so the block's activations (tokens x cols floats)
// stay in a 1 MiB L2 next to the weights streaming through: weights are then re-read from
// memory once per block, not once per token group. (23 tokens of 7168 columns, the most
// linear_rows serves on AVX-512, take 660 KiB: one block.)
constexpr int64_t kActivationBlockBytes = 768 * 1024;

template <class V>
inline float scale_at(const Matrix& w, int64_t r, int64_t c) {  // Matrix::block_scale, for V's TU
  float s;
  std::memcpy(&s, w.scale + ((w.row0 + r) / w.block_rows) * w.scale_cols + c / w.block_cols, sizeof s);
  return s;
}

// Elements [c, c + count) of a row starting at `row` (count <= kLanes; missing lanes are 0).
// FP8 comes back as value / V::kFp8Unit (see V::load_fp8), so its scale carries kFp8Unit.
template <class V, DType D>
inline typename V::Reg load_weights(const uint8_t* row, int64_t c, int count) {
  if constexpr (D == DType::F32) return V::load_f32(reinterpret_cast<const float*>(row) + c, count);
  if constexpr (D == DType::BF16) return V::load_bf16(row + 2 * c, count);
  if constexpr (D == DType::F16) return V::load_f16(row + 2 * c, count);
  if constexpr (D == DType::F8_E4M3) return V::load_fp8(row + c, count);
}

template <DType D>
static constexpr int64_t elem_bytes() {
  return D == DType::F32 ? 4 : D == DType::F8_E4M3 ? 1 : 2;
}

// Columns per scale block: FP8 with scales has 128-wide blocks, everything else one block.
template <DType D>
static inline int64_t block_width(const Matrix& w) {
  return D == DType::F8_E4M3 && w.quantized() ? w.block_cols : w.cols;
}

// FP8 activations are multiplied by scale x kFp8XUnit (pack_tokens_scaled), products come out
// as value x 2^-56 (the decode's 2^-120 times 2^64) and sums are multiplied by fp8_post() =
// 2^56. 2^64 keeps x' finite for any |x| x scale < 2^64 and products of the smallest FP8
// subnormal with activations down to ~1e-15 (at scale 1e-4) normal.
constexpr float kFp8XUnit = 0x1p64f;
template <class V>
constexpr float fp8_post() {
  return V::kFp8Unit / kFp8XUnit;
}

// Whether every FP8 block scale of the view's rows is below `limit` in magnitude (true for other
// dtypes and unscaled FP8).
static inline bool fp8_scales_below(const Matrix& w, float limit) {
  if (w.dtype != DType::F8_E4M3 || !w.quantized() || w.rows == 0) return true;
  const int64_t b0 = w.row0 / w.block_rows, b1 = (w.row0 + w.rows - 1) / w.block_rows;
  for (int64_t b = b0; b <= b1; ++b)
    for (int64_t k = 0; k < w.scale_cols; ++k) {
      float s;
      std::memcpy(&s, w.scale + b * w.scale_cols + k, sizeof s);
      if (!(s < limit && s > -limit)) return false;
    }
  return true;
}

// Whether every block scale of the view times kFp8Unit (dequant_row_range,
// linear_transposed_acc) and kFp8XUnit (linear, the GEMM) is a finite float: scales below 2^8
// (real checkpoints' are ~1e-4). If not, the scalar code runs.
template <class V>
bool fp8_scales_fit(const Matrix& w) {
  return fp8_scales_below(w, 3.0e38f / (V::kFp8Unit > kFp8XUnit ? V::kFp8Unit : kFp8XUnit));
}

// Multiplier turning a loaded weight into its dequantized value: scale x kFp8Unit for FP8
// (exact: a power of two), nothing for the other types.
template <class V, DType D>
inline float weight_multiplier(const Matrix& w, int64_t r, int64_t c) {
  if constexpr (D == DType::F8_E4M3) return (w.quantized() ? scale_at<V>(w, r, c) : 1.0f) * V::kFp8Unit;
  return 1.0f;
}

// out[i] = W[r, c0 + i] for i < n.
template <class V, DType D>
void dequant_row_range(const Matrix& w, int64_t r, int64_t c0, int64_t n, float* out) {
  constexpr int L = V::kLanes;
  const uint8_t* row = static_cast<const uint8_t*>(w.data) + size_t(r * w.cols) * elem_bytes<D>();
  const int64_t bw = block_width<D>(w), end = c0 + n;
  for (int64_t cb = c0; cb < end;) {
    int64_t ce = (cb / bw + 1) * bw;
    ce = ce < end ? ce : end;
    const typename V::Reg s = V::set1(weight_multiplier<V, D>(w, r, cb));
    for (int64_t c = cb; c < ce; c += L) {
      const int cnt = ce - c < L ? int(ce - c) : L;
      typename V::Reg v = load_weights<V, D>(row, c, cnt);
      if constexpr (D == DType::F8_E4M3) v = V::mul(v, s);
      V::store_f32(out + (c - c0), v, cnt);
    }
    cb = ce;
  }
}

// Vectors of one row decoded together in tile<V, D, RB, NT>: FP8 on a target with a group
// decode (V::kFp8Group > 1: AVX-512 decodes 64 codes with one byte permute, AVX2 32 with a
// dword permute and a byte shuffle) uses it while the tile is narrow enough in tokens that the
// group weights (RB x group, or one row's group with V::kFp8GroupPerRow) fit in registers next
// to the accumulators; else one vector at a time. Either way column c lands in lane c % L with
// the same float, and each accumulator sees the same FMA sequence.
template <class V, DType D, int NT>
constexpr int group_vectors() {
  return D == DType::F8_E4M3 && NT <= V::kFp8GroupTokens ? V::kFp8Group : 1;
}

// Weights [c, c + cnt) of a row (cnt <= GW x L) as GW vectors (lanes past cnt are 0).
template <class V, DType D, int GW>
inline void load_weight_group(const uint8_t* row, int64_t c, int cnt, typename V::Reg (&wv)[GW]) {
  if constexpr (GW > 1) {
    static_assert(D == DType::F8_E4M3 && GW == V::kFp8Group);
    V::load_fp8_group(row + c, cnt, wv);
  } else {
    wv[0] = load_weights<V, D>(row, c, cnt);
  }
}

// Software prefetch for a register tile of RB rows (`rows` its first row's data) that reads
// `step` bytes of each row per step: called for row i at byte `off` of the rows, it prefetches
// the tile's memory as one sequential stream `lead` bytes past the tile's last row start, so
// the hardware sees one stream per thread rather than RB short rows (one per line: for steps
// under a cache line only the chunks that start one). Counted from the last row, the line a
// row's step needs was requested at least `lead` bytes of reading earlier. Row-wise prefetch
// (each row `lead` ahead in itself) left 20-30% of the 2-thread read rate unused here: the
// memory controllers serve RB x threads interleaved short streams worse than a sequential one.
// (An address, not a pointer: past the last tile it points beyond the tensor, and a prefetch
// never faults.)
template <int RB, int Locality = 3>
static inline void prefetch_tile(const uint8_t* rows, int i, int64_t row_bytes, int64_t off, int64_t step,
                                 int64_t lead) {
  const int64_t at = off * RB + i * step;
  if (step < 64 && (at & 63) != 0) return;
  const uintptr_t a = reinterpret_cast<uintptr_t>(rows) + uintptr_t((RB - 1) * row_bytes + lead + at);
  __builtin_prefetch(reinterpret_cast<const void*>(a), 0, Locality);
}

// y[t * ldy + i] = sum_c W[r + i, c] x[t, c] for i < RB, t < NT, `rows` pointing at row r's
// data and xp the NT tokens in pack_tokens' layout (FP8: pre-scaled for row r's block by
// pack_tokens_scaled). Every (row, token) accumulator sees the same sequence of operations
// whatever RB and NT: each vector of columns is decoded and FMA'd in order.
template <class V, DType D, int RB, int NT>
void tile(const Matrix& w, const uint8_t* rows, const float* xp, float* y, int64_t ldy) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes, GW = group_vectors<V, D, NT>(), GL = GW * L;
  const int64_t cols = w.cols, row_bytes = cols * elem_bytes<D>();
  Reg acc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = V::zero();
  auto step = [&](int64_t c, int cnt) __attribute__((always_inline)) {  // cnt <= GL columns
    if constexpr (GW > 1 && V::kFp8GroupPerRow) {
      // One row's group at a time (GW registers, not RB x GW), its activations reloaded per row;
      // each accumulator still sees its vectors in column order.
      const float* xc = xp + (c / L) * NT * L;
      for (int i = 0; i < RB; ++i) {
        if constexpr (V::kPrefetchBytes > 0)
          prefetch_tile<RB>(rows, i, row_bytes, c * elem_bytes<D>(), GL * elem_bytes<D>(), V::kPrefetchBytes);
        Reg wv[GW];
        load_weight_group<V, D, GW>(rows + i * row_bytes, c, cnt, wv);
        for (int q = 0; q < GW; ++q) {
          if (q * L >= cnt) break;
          const int cq = cnt - q * L < L ? cnt - q * L : L;
          for (int t = 0; t < NT; ++t) acc[i][t] = V::fma(wv[q], V::load_f32(xc + (q * NT + t) * L, cq), acc[i][t]);
        }
      }
      return;
    }
    Reg wv[RB][GW];
    for (int i = 0; i < RB; ++i) {
      if constexpr (V::kPrefetchBytes > 0)
        prefetch_tile<RB>(rows, i, row_bytes, c * elem_bytes<D>(), GL * elem_bytes<D>(), V::kPrefetchBytes);
      load_weight_group<V, D, GW>(rows + i * row_bytes, c, cnt, wv[i]);
    }
    const float* xc = xp + (c / L) * NT * L;  // c is a multiple of L
    for (int q = 0; q < GW; ++q) {
      if (q * L >= cnt) break;
      const int cq = cnt - q * L < L ? cnt - q * L : L;
      for (int t = 0; t < NT; ++t) {
        const Reg xv = V::load_f32(xc + (q * NT + t) * L, cq);
        for (int i = 0; i < RB; ++i) acc[i][t] = V::fma(wv[i][q], xv, acc[i][t]);
      }
    }
  };
  int64_t c = 0;
  for (; c + GL <= cols; c += GL) step(c, GL);
  if (c < cols) step(c, int(cols - c));
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) {
      float v = V::reduce_add(acc[i][t]);
      if constexpr (D == DType::F8_E4M3) v *= fp8_post<V>();
      y[t * ldy + i] = v;
    }
}

// Tokens [0, nt) of x [.., cols] (rows ldx apart) repacked as [ceil(cols / L)][nt][L], zero
// padded: a tile's nt activation vectors for one vector of columns become one contiguous run
// instead of nt loads a row apart (rows a multiple of 4 KiB apart alias in L1, and the BF16
// lm_head tile at batch 8 ran at a third of the FMA peak).
template <class V>
void pack_tokens(const float* x, int64_t ldx, int nt, int64_t cols, float* xp) {
  constexpr int L = V::kLanes;
  for (int64_t j = 0; j * L < cols; ++j) {
    const int cnt = cols - j * L < L ? int(cols - j * L) : L;
    for (int t = 0; t < nt; ++t) V::store_f32(xp + (j * nt + t) * L, V::load_f32(x + t * ldx + j * L, cnt), L);
  }
}
template <class V>
int64_t packed_tokens_floats(int nt, int64_t cols) {
  return (cols + V::kLanes - 1) / V::kLanes * V::kLanes * nt;
}

// f[c] = the multiplier of column c's activations for the FP8 rows in row r's scale block
// (block scale x unit; unit alone for unscaled FP8), for c < cols rounded up to a multiple of
// `multiple` (unit past cols, where activations are 0). Filled a block at a time: the decode
// kernels call this once per 128 rows.
static inline void fp8_x_factors(const Matrix& w, int64_t r, float unit, int64_t multiple, float* f) {
  const int64_t cols = w.cols, padded = (cols + multiple - 1) / multiple * multiple;
  int64_t c = 0;
  if (w.quantized()) {
    const float* srow = w.scale + ((w.row0 + r) / w.block_rows) * w.scale_cols;
    for (int64_t kb = 0; c < cols; ++kb) {
      float s;
      std::memcpy(&s, srow + kb, sizeof s);
      const int64_t ce = c + w.block_cols < cols ? c + w.block_cols : cols;
      for (; c < ce; ++c) f[c] = s * unit;
    }
  }
  for (; c < padded; ++c) f[c] = unit;
}

// First row after r (view-relative, at most r1) outside r's FP8 scale block: rows [r, end)
// share their column scales, so one pre-scaled copy of the activations serves them all.
static inline int64_t fp8_block_end(const Matrix& w, int64_t r, int64_t r1) {
  if (!w.quantized()) return r1;
  const int64_t end = ((w.row0 + r) / w.block_rows + 1) * w.block_rows - w.row0;
  return end < r1 ? end : r1;
}

// pack_tokens times the factors f of fp8_x_factors: x'[t][c] = x[t][c] * f[c], the one rounding
// by which this path differs from dequantizing the weights.
template <class V>
void pack_tokens_scaled(const float* f, const float* x, int64_t ldx, int nt, int64_t cols, float* xp) {
  constexpr int L = V::kLanes;
  for (int64_t j = 0; j * L < cols; ++j) {
    const int64_t c = j * L;
    const int cnt = cols - c < L ? int(cols - c) : L;
    const typename V::Reg fv = V::load_f32(f + c, L);
    for (int t = 0; t < nt; ++t) V::store_f32(xp + (j * nt + t) * L, V::mul(V::load_f32(x + t * ldx + c, cnt), fv), L);
  }
}

// Rows [r0, r1) of y = W x for exactly NT tokens, x in pack_tokens' layout: register tiles of
// V::tile_rows(NT) rows, one row at a time for the rest.
template <class V, DType D, int NT>
void tile_rows(const Matrix& w, int64_t r0, int64_t r1, const float* xp, float* y) {
  constexpr int RB = V::tile_rows(NT);
  const int64_t row_bytes = w.cols * elem_bytes<D>();
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  int64_t r = r0;
  for (; r + RB <= r1; r += RB) tile<V, D, RB, NT>(w, data + size_t(r) * size_t(row_bytes), xp, y + r, w.rows);
  for (; r < r1; ++r) tile<V, D, 1, NT>(w, data + size_t(r) * size_t(row_bytes), xp, y + r, w.rows);
}

// tile_rows for a run-time token count nt <= NT.
template <class V, DType D, int NT>
void tile_rows_any(int nt, const Matrix& w, int64_t r0, int64_t r1, const float* xp, float* y) {
  if constexpr (NT > 1)
    if (nt < NT) return tile_rows_any<V, D, NT - 1>(nt, w, r0, r1, xp, y);
  tile_rows<V, D, NT>(w, r0, r1, xp, y);
}

// Rows [r0, r1) of y = W x for n tokens, every weight decoded in registers straight from the
// mapped tensor. Up to V::kTileTokens tokens share each decoded weight (one register tile);
// more tokens go in balanced groups of at most that many, a chunk of kTileRowChunk rows at a
// time, so that the chunk's raw weights come from L1/L2 (not memory) for every group after the
// first, and the activations of a block of tokens stay in L2 across chunks. Each group's
// activations are packed (pack_tokens) once per call, or for FP8 once per scale block of rows,
// pre-scaled for that block (pack_tokens_scaled).
constexpr int64_t kTileRowChunk = 24;  // a multiple of every V::tile_rows

// The blocking above, for any packed element type E (float32 here, BF16 in avx512bf16):
// packed(nt, cols) elements per group of nt tokens; pack(f, x, ldx, nt, cols, xp) packs nt
// tokens, times the FP8 factors f of the current row block (fp8_x_factors with `unit`, padded
// to `multiple`; null for other dtypes); rows(nt, r0, r1, xp, y) runs the register tiles.
template <int NT, class E, class Packed, class Pack, class Rows>
void linear_rows_blocked(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float unit,
                         int64_t multiple, const Packed& packed, const Pack& pack, const Rows& rows) {
  const bool fp8 = w.dtype == DType::F8_E4M3;
  const int64_t cols = w.cols;
  int64_t tb = kActivationBlockBytes / (cols * int64_t(sizeof(float)));
  tb = tb < NT ? NT : tb;
  thread_local std::vector<E> xp;
  thread_local std::vector<float> f;
  if (fp8 && int64_t(f.size()) < (cols + multiple - 1) / multiple * multiple)
    f.resize(size_t((cols + multiple - 1) / multiple * multiple));
  for (int64_t t0 = 0; t0 < n; t0 += tb) {
    const int64_t nb = n - t0 < tb ? n - t0 : tb, groups = (nb + NT - 1) / NT, g = (nb + groups - 1) / groups;
    const int64_t per_group = packed(int(g), cols);
    if (int64_t(xp.size()) < groups * per_group) xp.resize(size_t(groups * per_group));
    auto group_tokens = [&](int64_t t) { return t0 + nb - t < g ? int(t0 + nb - t) : int(g); };
    for (int64_t rs = r0; rs < r1;) {
      const int64_t re = fp8 ? fp8_block_end(w, rs, r1) : r1;
      if (fp8) fp8_x_factors(w, rs, unit, multiple, f.data());
      for (int64_t k = 0, t = t0; t < t0 + nb; ++k, t += g)
        pack(fp8 ? f.data() : nullptr, x + t * cols, cols, group_tokens(t), cols, xp.data() + k * per_group);
      for (int64_t rc = rs; rc < re; rc += kTileRowChunk) {
        const int64_t rce = re - rc < kTileRowChunk ? re : rc + kTileRowChunk;
        for (int64_t k = 0, t = t0; t < t0 + nb; ++k, t += g)
          rows(group_tokens(t), rc, rce, static_cast<const E*>(xp.data() + k * per_group), y + t * w.rows);
      }
      rs = re;
    }
  }
}

template <class V, DType D>
void linear_rows_typed(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1) {
  linear_rows_blocked<V::kTileTokens, float>(
      w, x, y, n, r0, r1, kFp8XUnit, V::kLanes, packed_tokens_floats<V>,
      [](const float* f, const float* xt, int64_t ldx, int nt, int64_t cols, float* xp) {
        if (f != nullptr) return pack_tokens_scaled<V>(f, xt, ldx, nt, cols, xp);
        pack_tokens<V>(xt, ldx, nt, cols, xp);
      },
      [&](int nt, int64_t rc, int64_t rce, const float* xp, float* yt) {
        tile_rows_any<V, D, V::kTileTokens>(nt, w, rc, rce, xp, yt);
      });
}

template <class V>
void linear_rows(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float* scratch) {
  if (!fp8_scales_fit<V>(w) || dtype_is_block(w.dtype)) return scalar::linear_rows(w, x, y, n, r0, r1, scratch);
  switch (w.dtype) {
    case DType::F32: return linear_rows_typed<V, DType::F32>(w, x, y, n, r0, r1);
    case DType::BF16: return linear_rows_typed<V, DType::BF16>(w, x, y, n, r0, r1);
    case DType::F16: return linear_rows_typed<V, DType::F16>(w, x, y, n, r0, r1);
    case DType::F8_E4M3: return linear_rows_typed<V, DType::F8_E4M3>(w, x, y, n, r0, r1);
    default: return V::unsupported(w.dtype);
  }
}

template <class V>
void dequant_row_range_any(const Matrix& w, int64_t r, int64_t c0, int64_t n, float* out) {
  if (!fp8_scales_fit<V>(w) || dtype_is_block(w.dtype)) return scalar::dequant_row_range(w, r, c0, n, out);
  switch (w.dtype) {
    case DType::F32: return dequant_row_range<V, DType::F32>(w, r, c0, n, out);
    case DType::BF16: return dequant_row_range<V, DType::BF16>(w, r, c0, n, out);
    case DType::F16: return dequant_row_range<V, DType::F16>(w, r, c0, n, out);
    case DType::F8_E4M3: return dequant_row_range<V, DType::F8_E4M3>(w, r, c0, n, out);
    default: return V::unsupported(w.dtype);
  }
}

// Rows ahead that transposed_tile_body prefetches when asked to.
constexpr int64_t kTransPrefetchRows = 8;

// Columns [pc, pc + nv * L) (cut at pe; within one scale block) of y[t0 + t, c] += sum_r
// x[t0 + t, r] W[r, c] for t < TT: TT x PV accumulators stay in registers while the rows stream
// past, each weight vector loaded (and dequantized) once for TT tokens.
template <class V, DType D, int TT, int PV, bool kFull>
void transposed_tile_body(const Matrix& w, const float* xs, float* ys, int64_t t0, int64_t pc, int64_t pe,
                          bool prefetch_rows) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  const int64_t cols = w.cols, row_bytes = cols * elem_bytes<D>();
  const int nv = kFull ? PV : int((pe - pc + L - 1) / L);
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  int cnt[PV];
  for (int k = 0; k < PV; ++k) cnt[k] = kFull ? L : k < nv ? (pe - pc - k * L < L ? int(pe - pc - k * L) : L) : 0;
  Reg acc[TT][PV];
  for (int t = 0; t < TT; ++t)
    for (int k = 0; k < PV; ++k) acc[t][k] = k < nv ? V::load_f32(ys + (t0 + t) * cols + pc + k * L, cnt[k]) : V::zero();
  for (int64_t r = 0; r < w.rows; ++r) {
    const uint8_t* row = data + size_t(r) * size_t(row_bytes);
    if (prefetch_rows)  // whole rows kTransPrefetchRows ahead: this pass and the later panels'
      for (int64_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(row + kTransPrefetchRows * row_bytes + b, 0, 3);
    Reg wv[PV] = {};
    for (int k = 0; k < PV; ++k) {
      if (k >= nv) break;
      wv[k] = load_weights<V, D>(row, pc + k * L, cnt[k]);
    }
    if constexpr (D == DType::F8_E4M3) {
      const Reg s = V::set1(weight_multiplier<V, D>(w, r, pc));
      for (int k = 0; k < PV; ++k) wv[k] = V::mul(wv[k], s);
    }
    for (int t = 0; t < TT; ++t) {
      const Reg xr = V::set1(xs[(t0 + t) * w.rows + r]);
      for (int k = 0; k < PV; ++k)
        if (k < nv) acc[t][k] = V::fma(xr, wv[k], acc[t][k]);
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int k = 0; k < PV; ++k)
      if (k < nv) V::store_f32(ys + (t0 + t) * cols + pc + k * L, acc[t][k], cnt[k]);
}

// transposed_tile_body, where a strip of exactly PV whole vectors takes a body without run-time
// column counts: with them, GCC kept the 8 x 3 accumulators on the stack.
template <class V, DType D, int TT, int PV>
void transposed_tile(const Matrix& w, const float* xs, float* ys, int64_t t0, int64_t pc, int64_t pe,
                     bool prefetch_rows = false) {
  if (pe - pc == int64_t(PV) * V::kLanes)
    return transposed_tile_body<V, D, TT, PV, true>(w, xs, ys, t0, pc, pe, prefetch_rows);
  transposed_tile_body<V, D, TT, PV, false>(w, xs, ys, t0, pc, pe, prefetch_rows);
}

// y[t, c] += sum_r x[t, r] W[r, c] for t < n, rows in increasing order for every (t, c) (as the
// scalar reference), so any tiling gives the same bits. Column panels of kPanel vectors (never
// crossing a scale block, so each (row, panel) has one scale) go through transposed_tile:
// TT = V::kTransTokens tokens x PV = V::kTransVectors vectors at a time, all token groups of one
// PV-vector strip before the next strip (the strip's rows come from L1/L2 for every group after
// the first); then 4 tokens x half a panel (where TT > 4) and the last 1-3 tokens x the whole
// panel. Larger TT means fewer passes over the rows: the latent attention's value product (16
// heads over 256 cached rows of 576 floats) ran at 72 GFLOP/s per core with 4 x 4 tiles.
template <class V, DType D>
void linear_transposed_acc_typed(const Matrix& w, const float* xs, float* ys, int64_t n) {
  constexpr int L = V::kLanes, P = V::kPanel, H = P / 2, TT = V::kTransTokens, PV = V::kTransVectors;
  static_assert(TT >= 2 && PV <= P);
  const int64_t cols = w.cols, bw = block_width<D>(w);
  // Weights straight from memory (W_uk^T q_nope in decode and batched decode: one pass per
  // panel, each reading a few lines of every row): the first tile's pass prefetches whole rows,
  // so later panels and token groups find them in cache, where the matrix fits in L2 (a head's
  // W_uk: 64 KiB of FP8). Not for float32 (the attention's latent cache, which the score
  // product has just read). Batch 8 of `medium`: q_abs 164 -> 115 us per layer with it.
  bool prefetch_rows = D != DType::F32 && w.rows * cols * elem_bytes<D>() <= (int64_t(256) << 10);
  // true for the first tile call only (then cleared)
  auto first = [&] {
    const bool p = prefetch_rows;
    prefetch_rows = false;
    return p;
  };
  for (int64_t pc = 0; pc < cols;) {
    int64_t pe = pc + P * L, be = (pc / bw + 1) * bw;
    pe = pe < be ? pe : be;
    pe = pe < cols ? pe : cols;
    for (int64_t sc = pc; sc < pe && n >= TT; sc += PV * L) {
      const int64_t se = sc + PV * L < pe ? sc + PV * L : pe;
      for (int64_t t = 0; t + TT <= n; t += TT) transposed_tile<V, D, TT, PV>(w, xs, ys, t, sc, se, first());
    }
    int64_t t = n / TT * TT;
    if constexpr (TT > 4)
      if (n - t >= 4) {
        const int64_t mid = pc + H * L < pe ? pc + H * L : pe;
        transposed_tile<V, D, 4, H>(w, xs, ys, t, pc, mid, first());
        if (mid < pe) transposed_tile<V, D, 4, H>(w, xs, ys, t, mid, pe);
        t += 4;
      }
    if constexpr (TT > 3)
      if (n - t == 3) transposed_tile<V, D, 3, P>(w, xs, ys, t, pc, pe, first());
    if constexpr (TT > 2)
      if (n - t == 2) transposed_tile<V, D, 2, P>(w, xs, ys, t, pc, pe, first());
    if (n - t == 1) transposed_tile<V, D, 1, P>(w, xs, ys, t, pc, pe, first());
    pc = pe;
  }
}

// ggml block formats: rows dequantized exactly (ggml's values, scalar::dequant_row_range), 64
// at a time, and multiplied as float32 weights. The chunks go in row order and the float32 path
// continues each (t, c) chain from y, so the bits are those of one float32 call over the
// dequantized matrix. (MLA's W_uk over GGUF's attn_k_b: the scalar loops took 10% of a Q8_0
// prefill.)
template <class V>
void linear_transposed_acc_blocks(const Matrix& w, const float* x, float* y, int64_t n) {
  constexpr int64_t kRows = 64;
  const int64_t cols = w.cols;
  thread_local std::vector<float> rows, xs;
  if (int64_t(rows.size()) < kRows * cols) rows.resize(size_t(kRows * cols));
  if (int64_t(xs.size()) < kRows * n) xs.resize(size_t(kRows * n));
  for (int64_t r0 = 0; r0 < w.rows; r0 += kRows) {
    const int64_t m = w.rows - r0 < kRows ? w.rows - r0 : kRows;
    for (int64_t i = 0; i < m; ++i) scalar::dequant_row_range(w, r0 + i, 0, cols, rows.data() + i * cols);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t i = 0; i < m; ++i) xs[size_t(t * m + i)] = x[t * w.rows + r0 + i];
    linear_transposed_acc_typed<V, DType::F32>(Matrix{DType::F32, m, cols, rows.data()}, xs.data(), y, n);
  }
}

template <class V>
void linear_transposed_acc(const Matrix& w, const float* x, float* y, int64_t n) {
  if (dtype_is_block(w.dtype)) return linear_transposed_acc_blocks<V>(w, x, y, n);
  if (!fp8_scales_fit<V>(w)) return scalar::linear_transposed_acc(w, x, y, n);
  switch (w.dtype) {
    case DType::F32: return linear_transposed_acc_typed<V, DType::F32>(w, x, y, n);
    case DType::BF16: return linear_transposed_acc_typed<V, DType::BF16>(w, x, y, n);
    case DType::F16: return linear_transposed_acc_typed<V, DType::F16>(w, x, y, n);
    case DType::F8_E4M3: return linear_transposed_acc_typed<V, DType::F8_E4M3>(w, x, y, n);
    default: return V::unsupported(w.dtype);
  }
}

}  // namespace dsv3::kernels::simd
