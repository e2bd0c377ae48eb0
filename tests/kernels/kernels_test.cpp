// Kernels against double-precision references written here, on awkward sizes and FP8 weights
// whose shapes cut 128x128 blocks at the edges. Each test names the variant it ran.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "core/dtype.h"
#include "kernels/ops.h"
#include "kernels/variant.h"

namespace dsv3::kernels {
namespace {

struct Fp8Weight {  // an FP8 tensor with per-block scales, plus its exact dequantized values
  int64_t rows, cols;
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  std::vector<double> dense;
  Matrix m;
};

Fp8Weight make_fp8(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 100);
  std::uniform_real_distribution<float> gain(0.5f, 2.0f);
  Fp8Weight w{rows, cols, {}, {}, {}, {}};
  const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
  w.codes.resize(size_t(rows * cols));
  w.scales.resize(size_t(sr * sc));
  for (auto& s : w.scales) s = gain(rng) * 1e-3f;
  for (auto& c : w.codes) c = f32_to_fp8e4m3(nd(rng));
  w.dense.resize(w.codes.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      w.dense[size_t(r * cols + c)] =
          double(fp8e4m3_to_f32(w.codes[size_t(r * cols + c)])) * w.scales[size_t((r / 128) * sc + c / 128)];
  w.m = Matrix{DType::F8_E4M3, rows, cols, w.codes.data(), w.scales.data(), sc, 0, 128, 128};
  return w;
}

std::vector<float> random_vec(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

// Allowed |y - ref| for a product whose terms sum to `mag` in magnitude: float32 accumulation,
// ~1e-6 relative, 1e-5 allowed; with BF16 activations (avx512bf16, for BF16 and FP8 weights)
// each activation also moves by up to 2^-9 of itself (variants_test.cpp's twin test), 2^-8.
double linear_tolerance(DType d, double mag) {
  const bool bf16 = active().bf16_activations && (d == DType::BF16 || d == DType::F8_E4M3);
  return (bf16 ? std::ldexp(1.0, -8) + 1e-5 : 1e-5) * mag + 1e-6;
}

class LinearFp8 : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

TEST_P(LinearFp8, MatchesDequantizedDoubleReference) {
  auto [rows, cols] = GetParam();
  SCOPED_TRACE("kernel variant: " + active_variant());
  Fp8Weight w = make_fp8(rows, cols, uint32_t(rows * 7 + cols));
  for (const int64_t n : {3, 9, 30}) {  // the one-token kernel, the decoded-rows tile, the GEMM
    SCOPED_TRACE("n = " + std::to_string(n));
    auto x = random_vec(n * cols, 1);
    std::vector<float> y(static_cast<size_t>(n * rows));
    ThreadPool pool(2);
    linear(w.m, x.data(), y.data(), n, pool);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double ref = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) {
          ref += w.dense[size_t(r * cols + c)] * x[size_t(t * cols + c)];
          mag += std::fabs(w.dense[size_t(r * cols + c)] * x[size_t(t * cols + c)]);
        }
        ASSERT_NEAR(y[size_t(t * rows + r)], ref, linear_tolerance(DType::F8_E4M3, mag)) << "t=" << t << " r=" << r;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, LinearFp8,
                         ::testing::Values(std::tuple<int64_t, int64_t>{1, 1}, std::tuple<int64_t, int64_t>{127, 129},
                                           std::tuple<int64_t, int64_t>{129, 127}, std::tuple<int64_t, int64_t>{80, 256},
                                           std::tuple<int64_t, int64_t>{257, 300}, std::tuple<int64_t, int64_t>{3, 4095}));

TEST(Matrix, RowSliceUsesTheScalesOfItsOwnRows) {
  SCOPED_TRACE("kernel variant: " + active_variant());
  Fp8Weight w = make_fp8(300, 200, 5);
  for (int64_t r0 : {0, 100, 127, 128, 250}) {
    const Matrix s = w.m.row_slice(r0, 300 - r0 >= 40 ? 40 : 300 - r0);
    std::vector<float> row(200);
    for (int64_t r = 0; r < s.rows; ++r) {
      dequant_row(s, r, row.data());
      for (int64_t c = 0; c < 200; ++c)
        ASSERT_EQ(double(row[size_t(c)]), double(float(w.dense[size_t((r0 + r) * 200 + c)])))
            << "slice at " << r0 << ", row " << r << ", col " << c;
    }
  }
}

TEST(Linear, TransposedAccumulateMatchesReference) {
  SCOPED_TRACE("kernel variant: " + active_variant());
  Fp8Weight w = make_fp8(129, 131, 9);
  auto x = random_vec(129, 2);
  std::vector<float> y(131, 1.0f);
  linear_transposed_acc(w.m, x.data(), y.data());
  for (int64_t c = 0; c < 131; ++c) {
    double ref = 1.0;
    for (int64_t r = 0; r < 129; ++r) ref += x[size_t(r)] * w.dense[size_t(r * 131 + c)];
    EXPECT_NEAR(y[size_t(c)], ref, 1e-4) << c;
  }
}

TEST(Linear, Bf16F16F32Weights) {
  SCOPED_TRACE("kernel variant: " + active_variant());
  const int64_t rows = 33, cols = 129;
  auto wf = random_vec(rows * cols, 3);
  std::vector<uint16_t> wb(wf.size()), wh(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) {
    wb[i] = f32_to_bf16(wf[i]);
    wh[i] = f32_to_f16(wf[i]);
  }
  auto x = random_vec(cols, 4);
  ThreadPool pool(1);
  for (DType d : {DType::F32, DType::BF16, DType::F16}) {
    const void* data = d == DType::F32 ? (const void*)wf.data() : d == DType::BF16 ? (const void*)wb.data() : wh.data();
    Matrix m{d, rows, cols, data};
    std::vector<float> y(static_cast<size_t>(rows));
    linear(m, x.data(), y.data(), 1, pool);
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = size_t(r * cols + c);
        const double wv = d == DType::F32 ? wf[i] : d == DType::BF16 ? bf16_to_f32(wb[i]) : f16_to_f32(wh[i]);
        ref += wv * x[size_t(c)];
        mag += std::fabs(wv * x[size_t(c)]);
      }
      EXPECT_NEAR(y[size_t(r)], ref, linear_tolerance(d, mag)) << dtype_name(d) << " row " << r;
    }
  }
}

TEST(Norm, RmsNormAndSoftmaxAndSilu) {
  SCOPED_TRACE("kernel variant: " + active_variant());
  for (int64_t n : {1, 7, 4095}) {
    auto x = random_vec(n, uint32_t(n));
    auto wv = random_vec(n, uint32_t(n + 1));
    Matrix w{DType::F32, 1, n, wv.data()};
    std::vector<float> y(static_cast<size_t>(n));
    rmsnorm(x.data(), w, 1e-6f, y.data());
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double inv = 1 / std::sqrt(ss / double(n) + 1e-6);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[size_t(i)], x[size_t(i)] * inv * wv[size_t(i)], 1e-5);

    std::vector<float> p = x;
    softmax(p.data(), n);
    double mx = -1e30, z = 0;
    for (float v : x) mx = std::max(mx, double(v));
    for (float v : x) z += std::exp(v - mx);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(p[size_t(i)], std::exp(x[size_t(i)] - mx) / z, 1e-6);

    std::vector<float> o(static_cast<size_t>(n));
    silu_mul(x.data(), wv.data(), o.data(), n);
    for (int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(o[size_t(i)], x[size_t(i)] / (1 + std::exp(-double(x[size_t(i)]))) * wv[size_t(i)], 1e-5);
  }
  float masked[3] = {-INFINITY, 0.0f, -INFINITY};
  softmax(masked, 3);
  EXPECT_EQ(masked[0], 0.0f);
  EXPECT_EQ(masked[1], 1.0f);
}

}  // namespace
}  // namespace dsv3::kernels
