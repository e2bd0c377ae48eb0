// The plain float32 matrix product (ops.h: matmul) for attention's products over activations,
// C = A B with one FMA chain per element in increasing k, so every ISA gives the scalar
// reference's bits. It reuses simd/gemm.h's register tile (G columns of C as vectors x NT rows
// of C as broadcasts) without that GEMM's lane layout, which exists to match the decode
// kernel's sums and costs a transpose and a 16-way merge per output: for attention's short
// contractions (qk_head_dim = 192) that overhead was a third of the work.
//
// Loops as in GotoBLAS: per block of MB rows of A and KC steps of k, A is packed once into
// [row tile][k][NT] (L2), then per panel of G columns B is packed into [k][G] (L1) and every
// row tile of the block runs over it; a block after the first resumes the chains from C.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/simd/gemm.h"

namespace dsv3::kernels::simd {

// dst[kk * ds + r] = src[r * ld + kk] for r < width, kk < kc, where the first `rows` rows are
// read and the rest are zero (width, rows <= L): L x L blocks transposed in registers.
template <class V>
void matmul_pack_transposed(const float* src, int64_t ld, int rows, int64_t kc, float* dst, int64_t ds, int width) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  for (int64_t k0 = 0; k0 < kc; k0 += L) {
    const int cnt = kc - k0 < L ? int(kc - k0) : L;
    Reg v[L];
    for (int r = 0; r < L; ++r) v[r] = r < rows ? V::load_f32(src + r * ld + k0, cnt) : V::zero();
    V::transpose(v);
    for (int l = 0; l < cnt; ++l) V::store_f32(dst + (k0 + l) * ds, v[l], width);
  }
}

template <class V>
void matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, bool b_trans,
            float* c, int64_t ldc) {
  using S = GemmShape<V>;
  constexpr int L = S::L, G = S::G, NT = S::NT;
  // KC x G floats of B (32 KiB for AVX-512) stay in L1 while MB x KC of A (192 KiB) stream
  // from L2.
  constexpr int64_t KC = 256, MB = 16 * NT;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = 0.0f;
    return;
  }
  thread_local std::vector<float> apack, bpack;
  apack.resize(size_t(MB * KC));
  bpack.resize(size_t(KC * G));
  float* ap = apack.data();
  float* bp = bpack.data();
  alignas(64) float edge[NT * G];  // C's last, partial column panel
  for (int64_t i0 = 0; i0 < m; i0 += MB) {
    const int64_t mb = m - i0 < MB ? m - i0 : MB, tiles = ceil_div(mb, NT);
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
      const int64_t kc = k - k0 < KC ? k - k0 : KC;
      const bool resume = k0 > 0;
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int nt = mb - tile * NT < NT ? int(mb - tile * NT) : NT;
        matmul_pack_transposed<V>(a + (i0 + tile * NT) * lda + k0, lda, nt, kc, ap + tile * KC * NT, NT, NT);
      }
      for (int64_t j0 = 0; j0 < n; j0 += G) {
        const int nj = n - j0 < G ? int(n - j0) : G;
        if (b_trans) {  // B(kk, j) = b[j * ldb + kk]: rows of b become columns of the panel
          for (int r0 = 0; r0 < G; r0 += L) {
            const int rows = nj - r0 < 0 ? 0 : (nj - r0 < L ? nj - r0 : L);
            matmul_pack_transposed<V>(b + (j0 + r0) * ldb + k0, ldb, rows, kc, bp + r0, G, L);
          }
        } else {  // B(kk, j) = b[kk * ldb + j]
          for (int64_t kk = 0; kk < kc; ++kk)
            for (int r0 = 0; r0 < G; r0 += L) {
              const int cnt = nj - r0 < 0 ? 0 : (nj - r0 < L ? nj - r0 : L);
              V::store_f32(bp + kk * G + r0, cnt > 0 ? V::load_f32(b + (k0 + kk) * ldb + j0 + r0, cnt) : V::zero(), L);
            }
        }
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const int nt = mb - tile * NT < NT ? int(mb - tile * NT) : NT;
          float* ct = c + (i0 + tile * NT) * ldc + j0;
          const float* at = ap + tile * KC * NT;
          if (nj == G) {
            gemm_micro_any<V, NT>(nt, bp, at, kc, ct, ldc, resume);
            continue;
          }
          if (resume)
            for (int t = 0; t < nt; ++t)
              for (int j = 0; j < nj; ++j) edge[t * G + j] = ct[t * ldc + j];
          gemm_micro_any<V, NT>(nt, bp, at, kc, edge, G, resume);
          for (int t = 0; t < nt; ++t)
            for (int j = 0; j < nj; ++j) ct[t * ldc + j] = edge[t * G + j];
        }
      }
    }
  }
}

}  // namespace dsv3::kernels::simd
