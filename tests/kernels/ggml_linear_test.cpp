// Weights in ggml block formats through every kernel variant this CPU runs: linear (one token,
// a few, many) against float64 sums over the exactly dequantized weights, and the bitwise
// properties the model relies on (results independent of the thread count, of the tokens
// computed together and of row-slice views); dequant_row_range on partial blocks;
// linear_transposed_acc.
//
// Tolerance: the scalar variant multiplies the dequantized float32 weights by float32
// activations, so as in variants_test.cpp 1e-5 x sum |w x| for summation order. The SIMD
// variants round each activation to a multiple of dx = amax / 16383 of its 256-column block
// (simd/qblocks.h), moving it by at most dx / 2: they may differ by sum |w| dx / 2 more. A
// wrong scale, sign or packed bit moves results by far more (the weights' own values).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/ggml_blocks.h"
#include "core/thread_pool.h"
#include "kernels/block_activations.h"
#include "kernels/scalar/scalar.h"
#include "kernels/variant.h"

namespace dsv3::kernels {
namespace {

constexpr DType kBlockTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                 DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// A quantized [rows, cols] weight at an odd address and its dequantized values.
struct BlockWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> dense;
  Matrix m;
};

BlockWeight make_block_weight(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 0.05f);
  std::vector<float> x(size_t(rows * cols));
  for (auto& v : x) v = nd(rng);
  BlockWeight w;
  const size_t row_bytes = dtype_row_bytes(t, cols);
  w.bytes.assign(size_t(rows) * row_bytes + 1, 0);
  w.dense.resize(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = w.bytes.data() + 1 + size_t(r) * row_bytes;
    ggml::quantize(t, x.data() + r * cols, cols, row);
    ggml::dequantize(t, row, cols / dtype_block_elems(t), w.dense.data() + r * cols);
  }
  w.m = Matrix{t, rows, cols, w.bytes.data() + 1};
  return w;
}

std::vector<float> random_x(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

std::vector<float> run(const Variant& v, const Matrix& w, const std::vector<float>& x, int64_t n, int threads) {
  std::vector<float> y(size_t(n * w.rows), NAN);
  if (threads == 0) {
    linear_with(v, w, x.data(), y.data(), n, nullptr);
  } else {
    ThreadPool pool(threads);
    linear_with(v, w, x.data(), y.data(), n, &pool);
  }
  return y;
}

std::vector<const Variant*> runnable_variants() {
  std::vector<const Variant*> out;
  for (const Variant* v : compiled_variants())
    if (missing_cpu_feature(*v).empty()) out.push_back(v);
  return out;
}

TEST(GgmlLinear, EveryVariantAgainstTheDequantizedWeights) {
  for (DType t : kBlockTypes) {
    const int64_t cols = dtype_block_elems(t) == 32 ? 160 : 512, rows = 37;
    const BlockWeight w = make_block_weight(t, rows, cols, 11);
    for (int64_t n : {1, 2, 5, 13, 40}) {
      const std::vector<float> x = random_x(n * cols, uint32_t(n));
      const int64_t sblocks = (cols + 255) / 256;  // the activations' 256-column blocks
      std::vector<float> amax(size_t(n * sblocks), 0.0f);
      for (int64_t i = 0; i < n * cols; ++i) {
        float& a = amax[size_t(i / cols * sblocks + i % cols / 256)];
        a = std::max(a, std::fabs(x[size_t(i)]));
      }
      for (const Variant* v : runnable_variants()) {
        const std::string what = std::string(v->name) + " " + std::string(dtype_name(t)) + " n " + std::to_string(n);
        const std::vector<float> y = run(*v, w.m, x, n, 0);
        for (int64_t tk = 0; tk < n; ++tk)
          for (int64_t r = 0; r < rows; ++r) {
            double ref = 0, mag = 0, xerr = 0;
            for (int64_t c = 0; c < cols; ++c) {
              const double p = double(w.dense[size_t(r * cols + c)]) * x[size_t(tk * cols + c)];
              ref += p;
              mag += std::fabs(p);
              xerr += std::fabs(w.dense[size_t(r * cols + c)]) * amax[size_t(tk * sblocks + c / 256)] / (2.0 * activation_max(t));
            }
            const double tol = 1e-5 * mag + (v == &scalar::variant() ? 0.0 : xerr) + 1e-30;
            ASSERT_NEAR(y[size_t(tk * rows + r)], ref, tol) << what << " token " << tk << " row " << r;
          }
        // Bitwise: any thread count, each token alone, a view of some rows.
        for (int threads : {1, 2, 3}) ASSERT_EQ(run(*v, w.m, x, n, threads), y) << what << " threads " << threads;
        for (int64_t tk = 0; tk < n; tk += 3) {
          const std::vector<float> xt(x.begin() + tk * cols, x.begin() + (tk + 1) * cols);
          const std::vector<float> yt = run(*v, w.m, xt, 1, 0);
          for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(yt[size_t(r)], y[size_t(tk * rows + r)]) << what << " token " << tk;
        }
        const Matrix slice = w.m.row_slice(5, 20);
        const std::vector<float> ys = run(*v, slice, x, n, 0);
        for (int64_t tk = 0; tk < n; ++tk)
          for (int64_t r = 0; r < 20; ++r)
            ASSERT_EQ(ys[size_t(tk * 20 + r)], y[size_t(tk * rows + 5 + r)]) << what << " slice row " << r;
      }
    }
  }
}

// The SIMD variants' integer arithmetic (int16 or, for Q4_K, 8-bit activations; the decode tiles
// for few tokens, the GEMM from gemm_min_tokens on) bit for bit against its scalar twin, scalar::linear_rows_int16; and the
// GEMM's contracts on shapes that cut its panels (32 rows), register tiles (AVX-512 4 rows x 3
// tokens, AVX2 3 x 2), token tiles (12, 6), row shares (32, 16) and column passes (1024)
// anywhere: every token as if alone, any thread count, a prompt in chunks on both sides of
// gemm_min_tokens (24, 8). Activations include a zero token, one with a huge entry, one
// with a NaN (its outputs NaN, the others untouched) and two of one sign (the minima's sums round).
TEST(GgmlLinear, IntegerKernelsEqualTheirScalarTwin) {
  for (DType t : kBlockTypes) {
    const int64_t cols = dtype_block_elems(t) == 32 ? 1120 : 1280, rows = 71, n = 41;
    const BlockWeight w = make_block_weight(t, rows, cols, 17);
    std::vector<float> x = random_x(n * cols, 23);
    std::fill(x.begin() + 3 * cols, x.begin() + 4 * cols, 0.0f);
    x[size_t(5 * cols + 7)] = 3e4f;
    x[size_t(9 * cols + 300)] = NAN;
    // Tokens of one sign: sums of xi large enough that the minima's float products and sums round.
    for (int64_t c = 0; c < cols; ++c) x[size_t(11 * cols + c)] = 1 + std::fabs(x[size_t(11 * cols + c)]);
    for (int64_t c = 0; c < cols; ++c) x[size_t(30 * cols + c)] = -2 - std::fabs(x[size_t(30 * cols + c)]);
    for (const Variant* v : runnable_variants()) {
      if (v == &scalar::variant()) continue;
      const int lanes = std::string(v->name) == "avx2" ? 8 : 16;
      const std::string what = std::string(v->name) + " " + std::string(dtype_name(t));
      std::vector<float> twin(size_t(n * rows));
      scalar::linear_rows_int16(w.m, x.data(), twin.data(), n, 0, rows, lanes);
      auto same = [&](const std::vector<float>& y, int64_t t0, int64_t nt, const std::string& how) {
        for (int64_t tk = 0; tk < nt; ++tk)
          for (int64_t r = 0; r < rows; ++r) {
            const float a = y[size_t(tk * rows + r)], b = twin[size_t((t0 + tk) * rows + r)];
            ASSERT_TRUE(std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)))
                << what << " " << how << " token " << t0 + tk << " row " << r << ": " << a << " vs twin " << b;
          }
      };
      for (int threads : {0, 1, 2, 3}) same(run(*v, w.m, x, n, threads), 0, n, "threads " + std::to_string(threads));
      for (int64_t tk : {0, 3, 5, 9, 11, 40}) {
        const std::vector<float> xt(x.begin() + tk * cols, x.begin() + (tk + 1) * cols);
        same(run(*v, w.m, xt, 1, 0), tk, 1, "alone");
      }
      ASSERT_NE(v->gemm, nullptr) << what;
      ASSERT_TRUE(v->gemm->supports(w.m)) << what;
      const int64_t g = gemm_min_tokens(*v->gemm, w.m);
      ASSERT_LT(g + 1, n) << what;
      // Chunks of g + 1 tokens (the GEMM), g - 1 (the tiles), then the rest.
      for (int64_t c0 = 0, c = 0, k = 0; c0 < n; c0 += c, ++k) {
        c = std::min(k == 0 ? g + 1 : k == 1 ? g - 1 : n, n - c0);
        const std::vector<float> xc(x.begin() + c0 * cols, x.begin() + (c0 + c) * cols);
        same(run(*v, w.m, xc, c, 2), c0, c, "chunk");
      }
      for (int64_t r = 0; r < rows; ++r) ASSERT_TRUE(std::isnan(twin[size_t(9 * rows + r)])) << what;
      ASSERT_TRUE(std::isfinite(twin[size_t(8 * rows)])) << what;
    }
  }
}

TEST(GgmlLinear, DequantRowRangeOnPartialBlocks) {
  for (DType t : kBlockTypes) {
    const int64_t cols = 768, rows = 3;
    const BlockWeight w = make_block_weight(t, rows, cols, 5);
    for (const Variant* v : runnable_variants())
      for (int64_t r = 0; r < rows; ++r)
        for (auto [c0, n] : {std::pair<int64_t, int64_t>{0, cols}, {1, 1}, {31, 2}, {200, 300}, {255, 513}, {767, 1}}) {
          std::vector<float> out(static_cast<size_t>(n));
          v->dequant_row_range(w.m, r, c0, n, out.data());
          for (int64_t i = 0; i < n; ++i)
            ASSERT_EQ(out[size_t(i)], w.dense[size_t(r * cols + c0 + i)])
                << v->name << " " << dtype_name(t) << " row " << r << " col " << c0 + i;
        }
  }
}

TEST(GgmlLinear, TransposedAccumulate) {
  for (DType t : kBlockTypes)
    for (auto [rows, n] : {std::pair<int64_t, int64_t>{19, 3}, {150, 11}}) {  // 150: the SIMD code's 64-row chunks
      const int64_t cols = 256;
      const BlockWeight w = make_block_weight(t, rows, cols, 9);
      const std::vector<float> x = random_x(n * rows, 4), y0 = random_x(n * cols, 8);
      for (const Variant* v : runnable_variants()) {
        std::vector<float> y = y0;
        v->linear_transposed_acc(w.m, x.data(), y.data(), n);
        for (int64_t tk = 0; tk < n; ++tk) {
          for (int64_t c = 0; c < cols; ++c) {
            double ref = y0[size_t(tk * cols + c)], mag = std::fabs(ref);
            for (int64_t r = 0; r < rows; ++r) {
              const double p = double(x[size_t(tk * rows + r)]) * w.dense[size_t(r * cols + c)];
              ref += p;
              mag += std::fabs(p);
            }
            ASSERT_NEAR(y[size_t(tk * cols + c)], ref, 1e-5 * mag) << v->name << " " << dtype_name(t) << " col " << c;
          }
          // Each token alone gets the bits it gets in the batch.
          std::vector<float> yt(y0.begin() + tk * cols, y0.begin() + (tk + 1) * cols);
          v->linear_transposed_acc(w.m, x.data() + tk * rows, yt.data(), 1);
          for (int64_t c = 0; c < cols; ++c)
            ASSERT_EQ(yt[size_t(c)], y[size_t(tk * cols + c)]) << v->name << " " << dtype_name(t) << " token " << tk;
        }
      }
    }
}

}  // namespace
}  // namespace dsv3::kernels
