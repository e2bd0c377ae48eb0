// Weight-reading kernels (linear, its transpose, dequantization) written once against a vector
// ISA's traits V (avx2/traits.h, avx512/traits.h) and instantiated in each ISA's own translation
// unit, compiled with that ISA's flags. Everything here is a template over V, so no function
// compiled for one ISA can be picked by the linker for another (no ODR-merged inline helpers).
//
// Numerics: each weight is dequantized exactly as the scalar reference does (FP8 value times
// its block scale, rounded to float32; BF16/F16 exactly), then multiplied into float32
// activations with FMA. Column c of a row accumulates in lane c % kLanes, lanes summed by a
// fixed tree at the end, so a row's result never depends on which other rows or tokens were
// computed with it, on n, or on the thread count.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "kernels/matrix.h"
#include "kernels/scalar/scalar.h"

namespace dsv3::kernels::simd {

// Token block for many-token products, sized so the block's activations (tokens x cols floats)
// stay in a 1 MiB L2 next to the weights streaming through: weights are then re-read from
// memory once per block, not once per token group.
constexpr int64_t kActivationBlockBytes = 512 * 1024;

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
constexpr int64_t elem_bytes() {
  return D == DType::F32 ? 4 : D == DType::F8_E4M3 ? 1 : 2;
}

// Columns per scale block: FP8 with scales has 128-wide blocks, everything else one block.
template <DType D>
inline int64_t block_width(const Matrix& w) {
  return D == DType::F8_E4M3 && w.quantized() ? w.block_cols : w.cols;
}

// Multiplier turning a loaded weight into its dequantized value: scale x kFp8Unit for FP8
// (exact: a power of two), nothing for the other types.
// Whether every block scale of the view times kFp8Unit is a finite float (scales below
// 2^8 with kFp8Unit = 2^120; real checkpoints' are ~1e-4). If not, the scalar code runs.
template <class V>
bool fp8_scales_fit(const Matrix& w) {
  if (w.dtype != DType::F8_E4M3 || !w.quantized() || w.rows == 0) return true;
  const int64_t b0 = w.row0 / w.block_rows, b1 = (w.row0 + w.rows - 1) / w.block_rows;
  const float limit = 3.0e38f / V::kFp8Unit;
  for (int64_t b = b0; b <= b1; ++b)
    for (int64_t k = 0; k < w.scale_cols; ++k) {
      float s;
      std::memcpy(&s, w.scale + b * w.scale_cols + k, sizeof s);
      if (!(s < limit && s > -limit)) return false;
    }
  return true;
}

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

// y[t * ldy + i] = sum_c W[r + i, c] x[t * ldx + c] for i < RB, t < NT. `w` gives the dtype
// layout and scales; `rows` points at row r's data.
template <class V, DType D, int RB, int NT>
void tile(const Matrix& w, const uint8_t* rows, int64_t r, const float* x, int64_t ldx, float* y, int64_t ldy) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  const int64_t cols = w.cols, row_bytes = cols * elem_bytes<D>(), bw = block_width<D>(w);
  Reg acc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) acc[i][t] = V::zero();
  // Each row's scales, walked block by block (one division per row, not per block).
  const uint8_t* srow[RB] = {};
  if constexpr (D == DType::F8_E4M3)
    if (w.quantized())
      for (int i = 0; i < RB; ++i)
        srow[i] = reinterpret_cast<const uint8_t*>(w.scale + ((w.row0 + r + i) / w.block_rows) * w.scale_cols);
  Reg s[RB];
  auto step = [&](int64_t c, int cnt) __attribute__((always_inline)) {
    Reg wv[RB];
    for (int i = 0; i < RB; ++i) {
      wv[i] = load_weights<V, D>(rows + i * row_bytes, c, cnt);
      if constexpr (D == DType::F8_E4M3) wv[i] = V::mul(wv[i], s[i]);
    }
    for (int t = 0; t < NT; ++t) {
      const Reg xv = V::load_f32(x + t * ldx + c, cnt);
      for (int i = 0; i < RB; ++i) acc[i][t] = V::fma(wv[i], xv, acc[i][t]);
    }
  };
  for (int64_t cb = 0, kb = 0; cb < cols; cb += bw, ++kb) {
    const int64_t ce = cb + bw < cols ? cb + bw : cols;
    if constexpr (D == DType::F8_E4M3)
      for (int i = 0; i < RB; ++i) {
        float si = 1.0f;
        if (w.quantized()) std::memcpy(&si, srow[i] + 4 * kb, sizeof si);
        s[i] = V::set1(si * V::kFp8Unit);
      }
    int64_t c = cb;
    for (; c + L <= ce; c += L) step(c, L);
    if (c < ce) step(c, int(ce - c));
  }
  for (int i = 0; i < RB; ++i)
    for (int t = 0; t < NT; ++t) y[t * ldy + i] = V::reduce_add(acc[i][t]);
}

// tile<> for run-time rb <= RB rows and nt <= NT tokens.
template <class V, DType D, int RB, int NT>
void tile_any(int rb, int nt, const Matrix& w, const uint8_t* rows, int64_t r, const float* x, int64_t ldx, float* y,
              int64_t ldy) {
  if constexpr (RB > 1)
    if (rb < RB) return tile_any<V, D, RB - 1, NT>(rb, nt, w, rows, r, x, ldx, y, ldy);
  if constexpr (NT > 1)
    if (nt < NT) return tile_any<V, D, RB, NT - 1>(rb, nt, w, rows, r, x, ldx, y, ldy);
  tile<V, D, RB, NT>(w, rows, r, x, ldx, y, ldy);
}

// Rows [r0, r1) of y = W x for n tokens. Up to kTokens tokens (decode), each weight is decoded
// in registers straight from the mapped tensor. For more tokens, kRows rows at a time are
// decoded once into `scratch` (kRows x cols floats, L1/L2-resident) and every token block
// runs the float32 tile over them: decode cost is shared by all tokens of the block.
template <class V, DType D>
void linear_rows_typed(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float* scratch) {
  constexpr int RB = V::kRows, NT = V::kTokens;
  const int64_t cols = w.cols, row_bytes = cols * elem_bytes<D>();
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  if (n <= NT) {
    for (int64_t r = r0; r < r1; r += RB) {
      const int rb = r1 - r < RB ? int(r1 - r) : RB;
      tile_any<V, D, RB, NT>(rb, int(n), w, data + size_t(r) * size_t(row_bytes), r, x, cols, y + r, w.rows);
    }
    return;
  }
  int64_t tb = kActivationBlockBytes / (cols * int64_t(sizeof(float))) / NT * NT;
  tb = tb < NT ? NT : tb;
  for (int64_t t0 = 0; t0 < n; t0 += tb) {
    const int64_t t1 = t0 + tb < n ? t0 + tb : n;
    for (int64_t r = r0; r < r1; r += RB) {
      const int rb = r1 - r < RB ? int(r1 - r) : RB;
      const uint8_t* rows = data + size_t(r) * size_t(row_bytes);
      Matrix dense{DType::F32, rb, cols, rows};
      if constexpr (D != DType::F32) {
        for (int i = 0; i < rb; ++i) dequant_row_range<V, D>(w, r + i, 0, cols, scratch + i * cols);
        dense.data = scratch;
        rows = reinterpret_cast<const uint8_t*>(scratch);
      }
      for (int64_t t = t0; t < t1; t += NT) {
        const int nt = t1 - t < NT ? int(t1 - t) : NT;
        tile_any<V, DType::F32, RB, NT>(rb, nt, dense, rows, 0, x + t * cols, cols, y + t * w.rows + r, w.rows);
      }
    }
  }
}

template <class V>
void linear_rows(const Matrix& w, const float* x, float* y, int64_t n, int64_t r0, int64_t r1, float* scratch) {
  if (!fp8_scales_fit<V>(w)) return scalar::linear_rows(w, x, y, n, r0, r1, scratch);
  switch (w.dtype) {
    case DType::F32: return linear_rows_typed<V, DType::F32>(w, x, y, n, r0, r1, scratch);
    case DType::BF16: return linear_rows_typed<V, DType::BF16>(w, x, y, n, r0, r1, scratch);
    case DType::F16: return linear_rows_typed<V, DType::F16>(w, x, y, n, r0, r1, scratch);
    case DType::F8_E4M3: return linear_rows_typed<V, DType::F8_E4M3>(w, x, y, n, r0, r1, scratch);
    default: return V::unsupported(w.dtype);
  }
}

template <class V>
void dequant_row_range_any(const Matrix& w, int64_t r, int64_t c0, int64_t n, float* out) {
  if (!fp8_scales_fit<V>(w)) return scalar::dequant_row_range(w, r, c0, n, out);
  switch (w.dtype) {
    case DType::F32: return dequant_row_range<V, DType::F32>(w, r, c0, n, out);
    case DType::BF16: return dequant_row_range<V, DType::BF16>(w, r, c0, n, out);
    case DType::F16: return dequant_row_range<V, DType::F16>(w, r, c0, n, out);
    case DType::F8_E4M3: return dequant_row_range<V, DType::F8_E4M3>(w, r, c0, n, out);
    default: return V::unsupported(w.dtype);
  }
}

// y[c] += sum_r x[r] W[r, c], rows in increasing order for every c (as the scalar reference).
// Panels of kPanel vectors of columns stay in registers while the rows stream past; a panel
// never crosses a scale block, so each (row, panel) has one scale.
template <class V, DType D>
void linear_transposed_acc_typed(const Matrix& w, const float* x, float* y) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes, P = V::kPanel;
  const int64_t cols = w.cols, row_bytes = cols * elem_bytes<D>(), bw = block_width<D>(w);
  const uint8_t* data = static_cast<const uint8_t*>(w.data);
  for (int64_t pc = 0; pc < cols;) {
    int64_t pe = pc + P * L, be = (pc / bw + 1) * bw;
    pe = pe < be ? pe : be;
    pe = pe < cols ? pe : cols;
    const int nv = int((pe - pc + L - 1) / L);
    Reg acc[P];
    for (int k = 0; k < P; ++k)
      if (k < nv) acc[k] = V::load_f32(y + pc + k * L, pe - pc - k * L < L ? int(pe - pc - k * L) : L);
    for (int64_t r = 0; r < w.rows; ++r) {
      const uint8_t* row = data + size_t(r) * size_t(row_bytes);
      const Reg xr = V::set1(x[r]);
      const Reg s = V::set1(weight_multiplier<V, D>(w, r, pc));
      for (int k = 0; k < P; ++k) {
        if (k >= nv) break;
        const int cnt = pe - pc - k * L < L ? int(pe - pc - k * L) : L;
        Reg wv = load_weights<V, D>(row, pc + k * L, cnt);
        if constexpr (D == DType::F8_E4M3) wv = V::mul(wv, s);
        acc[k] = V::fma(xr, wv, acc[k]);
      }
    }
    for (int k = 0; k < nv; ++k) V::store_f32(y + pc + k * L, acc[k], pe - pc - k * L < L ? int(pe - pc - k * L) : L);
    pc = pe;
  }
}

template <class V>
void linear_transposed_acc(const Matrix& w, const float* x, float* y, float* /*scratch*/) {
  if (!fp8_scales_fit<V>(w)) return scalar::linear_transposed_acc(w, x, y);
  switch (w.dtype) {
    case DType::F32: return linear_transposed_acc_typed<V, DType::F32>(w, x, y);
    case DType::BF16: return linear_transposed_acc_typed<V, DType::BF16>(w, x, y);
    case DType::F16: return linear_transposed_acc_typed<V, DType::F16>(w, x, y);
    case DType::F8_E4M3: return linear_transposed_acc_typed<V, DType::F8_E4M3>(w, x, y);
    default: return V::unsupported(w.dtype);
  }
}

}  // namespace dsv3::kernels::simd
