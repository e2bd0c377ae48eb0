// Every vectorised kernel variant against its scalar twin (kernels/scalar), on random inputs of
// awkward sizes, misaligned weight data, FP8 matrices with partial edge blocks and row-slice
// views. Each test is instantiated once per SIMD variant and carries the variant's name
// (".../avx512"); a variant this CPU cannot run is skipped naming the missing feature.
//
// Tolerances. The vector kernels dequantize every weight to the same float32 as the scalar
// code (avx512bf16: the same BF16 weights and activations as its scalar twin,
// scalar/bf16dot.cpp; bf16dot_test.cpp checks those bitwise), so what differs is only the order of the float32 sums (16 or 8 lanes, then a tree)
// and FMA's single rounding. For a sum of n terms the rounding error of either order is about
// sqrt(n) * 2^-24 * sum|terms| on random data (worst case n * 2^-24); at n = 4097 that is
// 4e-6, so we allow 1e-5 * sum|terms|: tight enough to catch a wrong scale, a dropped or
// doubled element or a misread tail (each of which is >= 1e-3 of the magnitude here), loose
// enough for any legitimate order. exp() is Cephes' polynomial (~2 ulp) against libm's
// correctly rounded one: 1e-5 relative covers both plus the sum of the softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/scalar/scalar.h"
#include "kernels/variant.h"

namespace dsv3::kernels {
namespace {

constexpr double kRel = 1e-5;

std::vector<float> random_vec(int64_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, sd);
  std::vector<float> v(size_t(n > 0 ? n : 0));
  for (auto& x : v) x = nd(rng);
  return v;
}

// A weight tensor stored at an odd address (mapped files promise no alignment), with its FP8
// block scales also misaligned, and the float32 value of every element for reference sums.
struct Weight {
  std::vector<uint8_t> bytes, scale_bytes;
  std::vector<float> dense;  // [rows, cols], dequantized exactly as the scalar code does
  Matrix m;
};

Weight make_weight(DType dtype, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  Weight w;
  const size_t n = size_t(rows * cols), es = dtype_size(dtype);
  w.bytes.assign(n * es + 1, 0);
  uint8_t* data = w.bytes.data() + 1;
  w.dense.resize(n);
  const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
  std::vector<float> scales(size_t(sr * sc));
  std::uniform_real_distribution<float> gain(0.5f, 2.0f);
  for (auto& s : scales) s = gain(rng) * 1e-2f;
  for (size_t i = 0; i < n; ++i) {
    const float v = nd(rng);
    switch (dtype) {
      case DType::F32:
        std::memcpy(data + 4 * i, &v, 4);
        w.dense[i] = v;
        break;
      case DType::BF16: {
        const uint16_t h = f32_to_bf16(v);
        std::memcpy(data + 2 * i, &h, 2);
        w.dense[i] = bf16_to_f32(h);
        break;
      }
      case DType::F16: {
        const uint16_t h = f32_to_f16(v);
        std::memcpy(data + 2 * i, &h, 2);
        w.dense[i] = f16_to_f32(h);
        break;
      }
      default: {  // FP8 e4m3 over its whole range, subnormals and both zeros included
        const uint8_t code = f32_to_fp8e4m3(v * 100.0f * (i % 7 == 0 ? 1e-3f : 1.0f));
        data[i] = code;
        const int64_t r = int64_t(i) / cols, c = int64_t(i) % cols;
        w.dense[i] = fp8e4m3_to_f32(code) * scales[size_t((r / 128) * sc + c / 128)];
      }
    }
  }
  w.m = Matrix{dtype, rows, cols, data};
  if (dtype == DType::F8_E4M3) {
    w.scale_bytes.assign(scales.size() * 4 + 2, 0);
    std::memcpy(w.scale_bytes.data() + 2, scales.data(), scales.size() * 4);
    w.m.scale = reinterpret_cast<const float*>(w.scale_bytes.data() + 2);
    w.m.scale_cols = sc;
  }
  return w;
}

class VariantTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    for (const Variant* v : compiled_variants())
      if (GetParam() == v->name) variant_ = v;
    if (variant_ == nullptr) GTEST_SKIP() << GetParam() << " is not compiled for this architecture";
    const std::string missing = missing_cpu_feature(*variant_);
    if (!missing.empty()) GTEST_SKIP() << "this CPU lacks " << missing << ", needed by " << GetParam();
  }
  const Variant& v() const { return *variant_; }
  // The scalar code v() must match: its twin with BF16 activations for avx512bf16.
  const Variant& ref() const { return variant_->bf16_activations ? scalar::bf16dot_variant() : scalar::variant(); }

  const Variant* variant_ = nullptr;
};

std::string variant_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

#define DSV3_INSTANTIATE_VARIANTS(suite) \
  INSTANTIATE_TEST_SUITE_P(Simd, suite, ::testing::Values("avx2", "avx512", "avx512bf16"), variant_name)

struct Shape {
  int64_t rows, cols;
};
const Shape kShapes[] = {{1, 1}, {127, 129}, {129, 127}, {80, 256}, {257, 300}, {7, 4097}};
const DType kDtypes[] = {DType::F8_E4M3, DType::BF16, DType::F16, DType::F32};

// y = W x through `var`, rows split at `cuts` as threads would split them.
std::vector<float> run_linear(const Variant& var, const Matrix& w, const std::vector<float>& x, int64_t n,
                              const std::vector<int64_t>& cuts = {}) {
  std::vector<float> y(size_t(n * w.rows), NAN), scratch(size_t(kLinearScratchRows * w.cols));
  int64_t r0 = 0;
  for (int64_t c : cuts) {
    var.linear_rows(w, x.data(), y.data(), n, r0, c, scratch.data());
    r0 = c;
  }
  var.linear_rows(w, x.data(), y.data(), n, r0, w.rows, scratch.data());
  return y;
}

// y = W x through `var` as ops.h's linear runs it (the GEMM path from gemm->min_tokens on),
// on a pool of `threads` threads (0: no pool, the calling thread only).
std::vector<float> run_linear_with(const Variant& var, const Matrix& w, const std::vector<float>& x, int64_t n,
                                   int threads) {
  std::vector<float> y(size_t(n * w.rows), NAN);
  if (threads == 0) {
    linear_with(var, w, x.data(), y.data(), n, nullptr);
  } else {
    ThreadPool pool(threads);
    linear_with(var, w, x.data(), y.data(), n, &pool);
  }
  return y;
}

// The GEMM's two phases called directly, rows cut at `row_cuts` and tokens at `token_cuts`
// (multiples of the token tile), each piece with its own scratch, as threads would run them.
std::vector<float> run_gemm(const Gemm& g, const Matrix& w, const std::vector<float>& x, int64_t n,
                            const std::vector<int64_t>& row_cuts, const std::vector<int64_t>& token_cuts) {
  std::vector<float> y(size_t(n * w.rows), NAN), xp(size_t(g.packed_x_floats(w, n)), NAN);
  const int64_t tiles = (n + g.token_tile - 1) / g.token_tile;
  g.pack_x(w, x.data(), n, 0, tiles / 2, xp.data());  // in two parts, as two threads would
  g.pack_x(w, x.data(), n, tiles / 2, tiles, xp.data());
  std::vector<int64_t> rc = row_cuts, tc = token_cuts;
  rc.push_back(w.rows);
  tc.push_back(n);
  int64_t t0 = 0;
  for (int64_t t1 : tc) {
    int64_t r0 = 0;
    for (int64_t r1 : rc) {
      std::vector<float> scratch(size_t(g.scratch_floats(w)), NAN);
      g.rows(w, xp.data(), y.data(), t0, t1, r0, r1, scratch.data());
      r0 = r1;
    }
    t0 = t1;
  }
  return y;
}

// Checks y (from the variant) and y_ref (scalar) against the magnitude of each row's terms.
void expect_linear_close(const Weight& w, const Matrix& view, int64_t row_off, const std::vector<float>& x, int64_t n,
                         const std::vector<float>& y, const std::vector<float>& y_ref) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < view.rows; ++r) {
      double mag = 0;
      for (int64_t c = 0; c < view.cols; ++c)
        mag += std::fabs(double(w.dense[size_t((row_off + r) * view.cols + c)]) * x[size_t(t * view.cols + c)]);
      const size_t i = size_t(t * view.rows + r);
      ASSERT_NEAR(y[i], y_ref[i], kRel * mag + 1e-30)
          << dtype_name(view.dtype) << " " << view.rows << "x" << view.cols << " token " << t << " row " << r;
    }
}

// Each token of x computed alone by var's one-token kernel (rows cut at `cuts`, as threads
// would) gives exactly the bits `whole` (all n tokens at once) holds for it.
void expect_tokens_alone_bitwise(const Variant& var, const Matrix& w, const std::vector<float>& x, int64_t n,
                                 const std::vector<float>& whole, std::string_view what,
                                 const std::vector<int64_t>& cuts = {}) {
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<float> xt(x.begin() + t * w.cols, x.begin() + (t + 1) * w.cols);
    const auto yt = run_linear(var, w, xt, 1, cuts);
    for (int64_t r = 0; r < w.rows; ++r)
      ASSERT_EQ(yt[size_t(r)], whole[size_t(t * w.rows + r)]) << what << " n " << n << " token " << t << " row " << r;
  }
}

class SimdLinear : public VariantTest {};

TEST_P(SimdLinear, MatchesScalarOnAwkwardShapesAllDtypesAndTokenCounts) {
  for (DType d : kDtypes)
    for (const Shape& s : kShapes) {
      const Weight w = make_weight(d, s.rows, s.cols, uint32_t(s.rows * 31 + s.cols));
      for (int64_t n : {1, 2, 3, 4, 5, 8, 9}) {  // every register-tile width, and token groups
        const auto x = random_vec(n * s.cols, uint32_t(n));
        expect_linear_close(w, w.m, 0, x, n, run_linear(v(), w.m, x, n), run_linear(ref(), w.m, x, n));
      }
    }
}

TEST_P(SimdLinear, Fp8RowSliceViewsUseTheirOwnScales) {
  const Weight w = make_weight(DType::F8_E4M3, 300, 257, 11);
  for (auto [r0, rows] : {std::pair<int64_t, int64_t>{100, 157}, {127, 2}, {129, 171}, {250, 50}}) {
    const Matrix view = w.m.row_slice(r0, rows);
    for (int64_t n : {1, 2, 5}) {
      const auto x = random_vec(n * 257, uint32_t(r0 + n));
      expect_linear_close(w, view, r0, x, n, run_linear(v(), view, x, n), run_linear(ref(), view, x, n));
    }
  }
}

// A block scale too large for the vector code (float32 variants: 2^120 x scale must be finite;
// avx512bf16: |scale| < 2^64) beyond which the variant leaves the row to its scalar twin.
float huge_scale(const Variant& v) { return v.bf16_activations ? 1e20f : 1e3f; }

// Scales too large for the vector code fall back to the scalar results.
TEST_P(SimdLinear, Fp8HugeScales) {
  Weight w = make_weight(DType::F8_E4M3, 130, 129, 12);
  auto* scales = reinterpret_cast<float*>(w.scale_bytes.data() + 2);
  const float big = huge_scale(v());
  std::memcpy(scales + 3, &big, 4);  // block (1, 1)
  for (size_t i = 0; i < w.dense.size(); ++i) {
    const int64_t r = int64_t(i) / 129, c = int64_t(i) % 129;
    if (r >= 128 && c >= 128) w.dense[i] = fp8e4m3_to_f32(w.bytes[i + 1]) * big;
  }
  const auto x = random_vec(2 * 129, 3);
  expect_linear_close(w, w.m, 0, x, 2, run_linear(v(), w.m, x, 2), run_linear(ref(), w.m, x, 2));
}

// Each row's result is the same bits however rows are split across threads and however many
// tokens are computed together: the reduction order is a property of the row alone.
TEST_P(SimdLinear, BitwiseIndependentOfRowSplitAndTokenCount) {
  for (DType d : kDtypes)
    for (int64_t n : {2, 3, 4, 7, 11, 23}) {  // register tiles of each width, token groups
      const Weight w = make_weight(d, 257, 300, 3);
      const auto x = random_vec(n * 300, 4);
      const auto whole = run_linear(v(), w.m, x, n);
      EXPECT_EQ(run_linear(v(), w.m, x, n, {1, 5, 130, 131}), whole) << dtype_name(d) << " n " << n;
      expect_tokens_alone_bitwise(v(), w.m, x, n, whole, dtype_name(d));
    }
}

// Several vectors in one call: each gets exactly the bits of a call of its own.
TEST_P(SimdLinear, TransposedAccumulateOfSeveralVectorsEqualsOneAtATime) {
  for (DType d : kDtypes)
    for (const Shape& s : kShapes) {
      const Weight w = make_weight(d, s.rows, s.cols, uint32_t(s.rows * 3 + s.cols));
      // Every tile shape and remainder: AVX-512 takes 8 tokens x 3 vectors, then 4 x 4, then 1-3 x 8;
      // AVX2 2 x 4, then 1 x 8.
      for (int64_t n : {int64_t(1), int64_t(2), int64_t(5), int64_t(7), int64_t(8), int64_t(11), int64_t(13), int64_t(16)}) {
        const auto x = random_vec(n * s.rows, 7), y0 = random_vec(n * s.cols, 8);
        std::vector<float> y = y0, one = y0;
        v().linear_transposed_acc(w.m, x.data(), y.data(), n);
        for (int64_t t = 0; t < n; ++t)
          v().linear_transposed_acc(w.m, &x[size_t(t * s.rows)], &one[size_t(t * s.cols)], 1);
        ASSERT_EQ(y, one) << dtype_name(d) << " " << s.rows << "x" << s.cols << " n " << n;
        std::vector<float> y_ref = y0;
        ref().linear_transposed_acc(w.m, x.data(), y_ref.data(), n);
        for (size_t i = 0; i < y.size(); ++i)
          ASSERT_NEAR(y[i], y_ref[i], 1e-3 * (1 + std::fabs(y_ref[i]))) << dtype_name(d) << " n " << n << " at " << i;
      }
    }
}

TEST_P(SimdLinear, TransposedAccumulateMatchesScalar) {
  for (DType d : kDtypes)
    for (const Shape& s : kShapes) {
      const Weight w = make_weight(d, s.rows, s.cols, uint32_t(s.rows + s.cols));
      const auto x = random_vec(s.rows, 5);
      const auto y0 = random_vec(s.cols, 6);
      std::vector<float> y = y0, y_ref = y0;
      v().linear_transposed_acc(w.m, x.data(), y.data(), 1);
      ref().linear_transposed_acc(w.m, x.data(), y_ref.data(), 1);
      for (int64_t c = 0; c < s.cols; ++c) {
        double mag = std::fabs(y0[size_t(c)]);
        for (int64_t r = 0; r < s.rows; ++r) mag += std::fabs(double(x[size_t(r)]) * w.dense[size_t(r * s.cols + c)]);
        ASSERT_NEAR(y[size_t(c)], y_ref[size_t(c)], kRel * mag) << dtype_name(d) << " " << s.rows << "x" << s.cols << " col " << c;
      }
    }
}

TEST_P(SimdLinear, DequantRowIsExact) {
  for (DType d : kDtypes) {
    const Weight w = make_weight(d, 300, 257, 8);
    const Matrix view = w.m.row_slice(129, 100);
    std::vector<float> out(257), out_ref(257);
    for (int64_t r : {0, 1, 99})
      for (auto [c0, len] : {std::pair<int64_t, int64_t>{0, 257}, {3, 200}, {127, 2}, {250, 7}}) {
        v().dequant_row_range(view, r, c0, len, out.data());
        ref().dequant_row_range(view, r, c0, len, out_ref.data());
        for (int64_t i = 0; i < len; ++i) ASSERT_EQ(out[size_t(i)], out_ref[size_t(i)]) << dtype_name(d) << " " << r << "," << c0 + i;
      }
  }
}

const int64_t kLengths[] = {1, 3, 127, 128, 129, 255, 4095, 4097};

// The many-token path (GEMM) against scalar, called directly (whatever n linear_with would
// start using it from) and through linear_with: token counts around the register tile (12
// tokens for AVX-512, 6 for AVX2) and the token block, rows around the register tile (32 / 16)
// and the decoded panel (128), columns around the vector width and FP8's 128-wide blocks.
TEST_P(SimdLinear, GemmMatchesScalarOnAwkwardShapes) {
  ASSERT_NE(v().gemm, nullptr);
  const Shape shapes[] = {{1, 1}, {1, 129}, {127, 1}, {127, 129}, {129, 127}, {129, 4097}, {300, 200}};
  for (DType d : kDtypes)
    for (const Shape& s : shapes) {
      const Weight w = make_weight(d, s.rows, s.cols, uint32_t(s.rows * 17 + s.cols));
      for (int64_t n : {7, 8, 9, 63, 130}) {
        if (s.cols > 1000 && n > 63) continue;  // keeps the scalar reference quick
        const auto x = random_vec(n * s.cols, uint32_t(n + s.cols));
        const auto y_ref = run_linear(ref(), w.m, x, n);
        expect_linear_close(w, w.m, 0, x, n, run_gemm(*v().gemm, w.m, x, n, {}, {}), y_ref);
        expect_linear_close(w, w.m, 0, x, n, run_linear_with(v(), w.m, x, n, 2), y_ref);
      }
    }
}

TEST_P(SimdLinear, GemmFp8RowSlicesStartingInsideAScaleBlock) {
  const Weight w = make_weight(DType::F8_E4M3, 300, 257, 13);
  for (auto [r0, rows] : {std::pair<int64_t, int64_t>{100, 157}, {1, 299}, {129, 171}, {250, 50}, {127, 2}})
    for (int64_t n : {9, 63}) {
      const Matrix view = w.m.row_slice(r0, rows);
      const auto x = random_vec(n * 257, uint32_t(r0 + n));
      expect_linear_close(w, view, r0, x, n, run_gemm(*v().gemm, view, x, n, {}, {}), run_linear(ref(), view, x, n));
    }
}

// Scales too large for the vector decode leave the GEMM to linear_rows (and so to scalar).
TEST_P(SimdLinear, GemmFp8HugeScalesFallBack) {
  Weight w = make_weight(DType::F8_E4M3, 130, 129, 12);
  auto* scales = reinterpret_cast<float*>(w.scale_bytes.data() + 2);
  const float big = huge_scale(v());
  std::memcpy(scales + 3, &big, 4);
  EXPECT_FALSE(v().gemm->supports(w.m));
  const auto x = random_vec(9 * 129, 3);
  EXPECT_EQ(run_linear_with(v(), w.m, x, 9, 2), run_linear(ref(), w.m, x, 9));
}

// The GEMM gives each (row, token) the bits the one-token kernel gives it, whatever the number
// of tokens, the thread count, and the row and token split: speculative decoding relies on a
// batched forward equalling token-by-token decode. Negative FP8 scales included (zero padding
// then carries a sign, which the packing must reproduce).
TEST_P(SimdLinear, GemmBitwiseEqualsOneTokenKernel) {
  const Gemm& g = *v().gemm;
  for (DType d : kDtypes) {
    Weight w = make_weight(d, 200, 300, 21);
    if (d == DType::F8_E4M3) {
      auto* scales = reinterpret_cast<float*>(w.scale_bytes.data() + 2);
      for (int k : {0, 3, 5}) {
        float sk;
        std::memcpy(&sk, scales + k, 4);
        sk = -sk;
        std::memcpy(scales + k, &sk, 4);
      }
    }
    for (int64_t n : {int64_t(8), int64_t(13), g.min_tokens, int64_t(130)}) {
      const auto x = random_vec(n * 300, uint32_t(40 + n));
      const auto whole = run_linear_with(v(), w.m, x, n, 0);
      for (int threads : {1, 2, 3}) EXPECT_EQ(run_linear_with(v(), w.m, x, n, threads), whole) << dtype_name(d) << " " << threads;
      const int64_t tt = g.token_tile;
      EXPECT_EQ(run_gemm(g, w.m, x, n, {1, 31, 32, 100, 165}, {}), whole) << dtype_name(d) << " n " << n;
      if (n > tt) {
        EXPECT_EQ(run_gemm(g, w.m, x, n, {70}, {tt}), whole) << dtype_name(d) << " n " << n;
      }
      expect_tokens_alone_bitwise(v(), w.m, x, n, whole, dtype_name(d));
    }
  }
}

// Other FP8 block shapes than DeepSeek's 128 x 128 (64 rows x 40 columns: blocks not a whole
// number of vectors wide, so one vector of activations spans two column scales): the scales go
// into the activations column by column, and the one-token kernel, the register tiles, the GEMM
// (also on a row slice starting inside a block) agree bitwise and match scalar.
TEST_P(SimdLinear, Fp8OtherBlockShapes) {
  const int64_t rows = 200, cols = 300, br = 64, bc = 40, sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
  Weight w = make_weight(DType::F8_E4M3, rows, cols, 31);
  std::vector<float> scales(size_t(sr * sc));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> gain(-2.0f, 2.0f);
  for (auto& s : scales) s = gain(rng) * 1e-2f;
  w.scale_bytes.assign(scales.size() * 4 + 2, 0);
  std::memcpy(w.scale_bytes.data() + 2, scales.data(), scales.size() * 4);
  w.m.scale = reinterpret_cast<const float*>(w.scale_bytes.data() + 2);
  w.m.scale_cols = sc;
  w.m.block_rows = br;
  w.m.block_cols = bc;
  const auto* codes = static_cast<const uint8_t*>(w.m.data);
  for (int64_t i = 0; i < rows * cols; ++i)
    w.dense[size_t(i)] = fp8e4m3_to_f32(codes[i]) * scales[size_t((i / cols / br) * sc + (i % cols) / bc)];
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(6), v().gemm->min_tokens, int64_t(40)}) {
    const auto x = random_vec(n * cols, uint32_t(70 + n));
    const auto whole = run_linear_with(v(), w.m, x, n, 2);
    expect_linear_close(w, w.m, 0, x, n, whole, run_linear(ref(), w.m, x, n));
    EXPECT_EQ(run_gemm(*v().gemm, w.m, x, n, {32, 96}, {}), whole) << "n " << n;
    expect_tokens_alone_bitwise(v(), w.m, x, n, whole, "64 x 40 blocks", {50, 130});
    const Matrix view = w.m.row_slice(50, 120);
    const auto yv = run_gemm(*v().gemm, view, x, n, {32}, {});
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < 120; ++r)
        ASSERT_EQ(yv[size_t(t * 120 + r)], whole[size_t(t * rows + 50 + r)]) << "slice, n " << n << " token " << t;
  }
}

// matmul promises the scalar reference's bits (one FMA chain per element, increasing k), so
// this compares exactly: sizes around the register tile (12 or 6 rows of C, 32 or 16 columns),
// the row block (16 tiles) and the k block (256), both layouts of B, strides wider than the
// rows, and odd offsets. Elements of C past n in each row (the stride's slack) must stay as
// they were.
TEST_P(SimdLinear, MatmulBitwiseEqualsScalar) {
  struct Case { int64_t m, n, k; };
  const Case cases[] = {{1, 1, 1},    {1, 17, 3},    {5, 1, 200},   {12, 32, 192}, {13, 33, 192}, {7, 129, 191},
                        {40, 128, 513}, {193, 70, 64}, {128, 300, 257}, {3, 5, 0}};
  for (const Case& cs : cases)
    for (bool b_trans : {false, true}) {
      const int64_t lda = cs.k + 3, ldb = (b_trans ? cs.k : cs.n) + 5, ldc = cs.n + 2;
      const auto a = random_vec(cs.m * lda + 1, uint32_t(cs.m * 7 + cs.k));
      const auto b = random_vec((b_trans ? cs.n : std::max<int64_t>(cs.k, 1)) * ldb + 1, uint32_t(cs.n * 5 + cs.k));
      std::vector<float> c = random_vec(cs.m * ldc + 1, 99), c_ref = c;
      v().matmul(cs.m, cs.n, cs.k, a.data() + 1, lda, b.data() + 1, ldb, b_trans, c.data() + 1, ldc);
      scalar::matmul(cs.m, cs.n, cs.k, a.data() + 1, lda, b.data() + 1, ldb, b_trans, c_ref.data() + 1, ldc);
      for (size_t i = 0; i < c.size(); ++i)
        ASSERT_EQ(c[i], c_ref[i]) << cs.m << "x" << cs.n << "x" << cs.k << (b_trans ? " B transposed" : "") << " at "
                                  << i;
      // and against a double-precision sum, so that a shared mistake cannot pass
      for (int64_t i = 0; i < cs.m; ++i)
        for (int64_t j = 0; j < cs.n; ++j) {
          double sum = 0, mag = 0;
          for (int64_t kk = 0; kk < cs.k; ++kk) {
            const double p = double(a[size_t(1 + i * lda + kk)]) *
                             b[size_t(1 + (b_trans ? j * ldb + kk : kk * ldb + j))];
            sum += p;
            mag += std::fabs(p);
          }
          ASSERT_NEAR(c_ref[size_t(1 + i * ldc + j)], sum, kRel * mag + 1e-30) << i << "," << j;
        }
    }
}

class SimdElementwise : public VariantTest {};

TEST_P(SimdElementwise, DotAndAxpy) {
  for (int64_t n : kLengths) {
    // Offsets by one float: the vector loads must not assume 64-byte alignment.
    const auto a = random_vec(n + 1, uint32_t(n)), b = random_vec(n + 1, uint32_t(n + 1));
    double mag = 0;
    for (int64_t i = 0; i < n; ++i) mag += std::fabs(double(a[size_t(i + 1)]) * b[size_t(i + 1)]);
    EXPECT_NEAR(v().dot(a.data() + 1, b.data() + 1, n), ref().dot(a.data() + 1, b.data() + 1, n), kRel * mag) << n;

    std::vector<float> y = random_vec(n + 2, 9), y_ref = y;  // y[n + 1] must stay untouched
    v().axpy(0.37f, a.data() + 1, y.data() + 1, n);
    ref().axpy(0.37f, a.data() + 1, y_ref.data() + 1, n);
    for (int64_t i = 0; i < n + 2; ++i)
      ASSERT_NEAR(y[size_t(i)], y_ref[size_t(i)], 1e-6 * (std::fabs(y_ref[size_t(i)]) + 1)) << n << " at " << i;
    EXPECT_EQ(y[size_t(n + 1)], y_ref[size_t(n + 1)]);
  }
}

TEST_P(SimdElementwise, RmsNormAllWeightDtypes) {
  for (int64_t n : kLengths)
    for (DType d : {DType::F32, DType::BF16, DType::F8_E4M3}) {
      const Weight w = make_weight(d, 1, n, uint32_t(n));
      const auto x = random_vec(n, uint32_t(n + 2), 3.0f);
      std::vector<float> y(x.size()), y_ref(x.size()), inplace = x;
      v().rmsnorm(x.data(), w.m, 1e-6f, y.data());
      ref().rmsnorm(x.data(), w.m, 1e-6f, y_ref.data());
      v().rmsnorm(inplace.data(), w.m, 1e-6f, inplace.data());
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(y[size_t(i)], y_ref[size_t(i)], kRel * std::fabs(y_ref[size_t(i)]) + 1e-30) << dtype_name(d) << " " << n << " at " << i;
        ASSERT_EQ(inplace[size_t(i)], y[size_t(i)]) << "in place, " << n << " at " << i;
      }
    }
}

TEST_P(SimdElementwise, SoftmaxIncludingMaskedEntries) {
  for (int64_t n : kLengths) {
    auto x = random_vec(n, uint32_t(n), 4.0f);
    for (int64_t i = 0; i < n; i += 3) x[size_t(i)] = -INFINITY;  // causal-mask style entries
    if (n > 1) x[1] = 1.0f;  // at least one finite entry
    auto p = x, p_ref = x;
    v().softmax(p.data(), n);
    ref().softmax(p_ref.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(p[size_t(i)], p_ref[size_t(i)], kRel * p_ref[size_t(i)] + 1e-12) << n << " at " << i;
      if (x[size_t(i)] == -INFINITY) {
        ASSERT_EQ(p[size_t(i)], 0.0f);
      }
    }
  }
  std::vector<float> all_masked(5, -INFINITY);
  v().softmax(all_masked.data(), 5);
  for (float f : all_masked) EXPECT_EQ(f, 0.0f);
}

// The flash-attention block: scaled entries, their maximum, exp(scaled - max) and its sum, with
// masked (-inf) entries and the all-masked case.
TEST_P(SimdElementwise, SoftmaxPartialReturnsMaxAndSum) {
  for (int64_t n : kLengths) {
    auto x = random_vec(n, uint32_t(n + 11), 30.0f);
    for (int64_t i = 2; i < n; i += 5) x[size_t(i)] = -INFINITY;
    auto p = x, p_ref = x;
    float m = 0, m_ref = 0;
    const float sum = v().softmax_partial(p.data(), n, 0.088f, &m);
    const float sum_ref = ref().softmax_partial(p_ref.data(), n, 0.088f, &m_ref);
    ASSERT_EQ(m, m_ref) << n;  // the same products, the same maximum
    ASSERT_NEAR(sum, sum_ref, kRel * sum_ref) << n;
    EXPECT_GE(sum, 1.0f) << n;  // the maximum's own exp(0) = 1
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(p[size_t(i)], p_ref[size_t(i)], kRel * p_ref[size_t(i)] + 1e-30) << n << " at " << i;
      if (x[size_t(i)] == -INFINITY) {
        ASSERT_EQ(p[size_t(i)], 0.0f);
      }
    }
  }
  std::vector<float> all_masked(19, -INFINITY);
  float m = 0;
  EXPECT_EQ(v().softmax_partial(all_masked.data(), 19, 0.5f, &m), 0.0f);
  EXPECT_EQ(m, -INFINITY);
  for (float f : all_masked) EXPECT_EQ(f, 0.0f);
}

TEST_P(SimdElementwise, SiluMulIncludingLargeGates) {
  for (int64_t n : kLengths) {
    auto g = random_vec(n, uint32_t(n), 4.0f);
    const auto u = random_vec(n, uint32_t(n + 5));
    if (n > 2) g[0] = -100.0f, g[1] = 100.0f, g[2] = -88.5f;  // exp over- and underflow
    std::vector<float> o(g.size()), o_ref(g.size());
    v().silu_mul(g.data(), u.data(), o.data(), n);
    ref().silu_mul(g.data(), u.data(), o_ref.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(o[size_t(i)], o_ref[size_t(i)], kRel * std::fabs(o_ref[size_t(i)]) + 1e-30) << n << " at " << i << " gate " << g[size_t(i)];
  }
}

TEST_P(SimdElementwise, RopeInterleaved) {
  for (int64_t dim : {2, 64, 130}) {
    auto x = random_vec(dim, uint32_t(dim)), x_ref = x;
    const auto cs = random_vec(dim / 2, 1), sn = random_vec(dim / 2, 2);
    v().rope_interleaved(x.data(), cs.data(), sn.data(), dim);
    ref().rope_interleaved(x_ref.data(), cs.data(), sn.data(), dim);
    for (int64_t i = 0; i < dim; ++i) ASSERT_NEAR(x[size_t(i)], x_ref[size_t(i)], 1e-6 * (std::fabs(x_ref[size_t(i)]) + 1));
  }
}

DSV3_INSTANTIATE_VARIANTS(SimdLinear);
DSV3_INSTANTIATE_VARIANTS(SimdElementwise);

// ---- avx512bf16: BF16 and FP8 weights times activations rounded to BF16 --------------------

class Bf16Dot : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const Variant* c : compiled_variants())
      if (std::string_view(c->name) == "avx512bf16") v_ = c;
    if (v_ == nullptr) GTEST_SKIP() << "avx512bf16 is not compiled for this architecture";
    const std::string missing = missing_cpu_feature(*v_);
    if (!missing.empty()) GTEST_SKIP() << "this CPU lacks " << missing << ", needed by avx512bf16";
  }
  const Variant* v_ = nullptr;
};

// The vector code (one-token tiles of every width, token groups, the GEMM on 1-3 threads) gives
// exactly the bits of its scalar twin, the readable statement of what it computes: both ways of
// multiplying FP8 weights (BF16 lookup + VDPBF16PS, float32 decode + FMAs) and the one this CPU
// takes by default.
TEST_F(Bf16Dot, MatchesItsScalarTwinBitwise) {
  const Variant& twin = scalar::bf16dot_variant();
  const Shape shapes[] = {{1, 1}, {3, 31}, {5, 33}, {9, 64}, {4, 65}, {127, 129}, {129, 127}, {40, 300}, {7, 4097}};
  for (Fp8Dot how : {Fp8Dot::kAuto, Fp8Dot::kLookup, Fp8Dot::kFma}) {
    const Variant& v = *bf16_variant_with(how);
    for (DType d : {DType::BF16, DType::F8_E4M3})
      for (const Shape& s : shapes) {
        const Weight w = make_weight(d, s.rows, s.cols, uint32_t(s.rows * 7 + s.cols));
        for (int64_t n : {1, 2, 3, 4, 5, 8, 9, 24, 37}) {
          const auto x = random_vec(n * s.cols, uint32_t(n * 3 + s.cols));
          const auto y_twin = run_linear(twin, w.m, x, n);
          EXPECT_EQ(run_linear(v, w.m, x, n), y_twin) << v.name << " " << dtype_name(d) << " " << s.rows << "x" << s.cols << " n " << n;
          EXPECT_EQ(run_linear_with(v, w.m, x, n, 2), y_twin) << v.name << " " << dtype_name(d) << " " << s.rows << "x" << s.cols << " n " << n;
        }
      }
  }
}

// The FMA path's activations carry 2^120 (the decoded FP8 weights 2^-120), so it takes only
// rounded activations x' = x * scale with 2^-117 <= |x'| < 2^8 (or 0) and has the lookup tile
// redo the rest: same bits for activations inside the range but large, past it, and tiny enough
// that products would be float32 subnormals.
TEST_F(Bf16Dot, FmaPathOutsideItsRangeAndNearUnderflow) {
  const Variant& twin = scalar::bf16dot_variant();
  const Variant& fma = *bf16_variant_with(Fp8Dot::kFma);
  const Weight w = make_weight(DType::F8_E4M3, 40, 300, 11);
  // x' ~ 1e2 (inside, near the top), ~1e3 (past 2^8), ~1e-38 and ~3e-40 (products near and
  // under float32's floor)
  for (float gain : {1e4f, 1e5f, 1e-36f, 3e-38f}) {
    for (int64_t n : {1, 3}) {
      auto x = random_vec(n * 300, uint32_t(n + 5));
      for (float& v : x) v *= gain;
      const auto y_twin = run_linear(twin, w.m, x, n);
      EXPECT_EQ(run_linear(fma, w.m, x, n), y_twin) << "gain " << gain << " n " << n;
    }
  }
}

// A view marked f32_activations is multiplied as the float32 variant multiplies it (the same
// bits, one-token tiles and GEMM, any thread count), and its twin is the float32 reference.
TEST_F(Bf16Dot, F32ActivationViewsTakeTheFloat32Kernels) {
  const Variant* f32 = &find_variant(kFloat32Kernels, "test");
  for (DType d : {DType::BF16, DType::F8_E4M3})
    for (const Shape& s : {Shape{5, 33}, Shape{129, 127}, Shape{40, 300}}) {
      Weight w = make_weight(d, s.rows, s.cols, uint32_t(s.rows * 5 + s.cols));
      w.m.f32_activations = true;
      for (int64_t n : {1, 4, 37}) {
        const auto x = random_vec(n * s.cols, uint32_t(n + s.cols));
        const auto y_f32 = run_linear(*f32, w.m, x, n);
        EXPECT_EQ(run_linear(*v_, w.m, x, n), y_f32) << dtype_name(d) << " " << s.rows << "x" << s.cols << " n " << n;
        for (int threads : {1, 2, 3})
          EXPECT_EQ(run_linear_with(*v_, w.m, x, n, threads), y_f32) << dtype_name(d) << " n " << n << " threads " << threads;
        EXPECT_EQ(run_linear(scalar::bf16dot_variant(), w.m, x, n), run_linear(scalar::variant(), w.m, x, n));
        Matrix plain = w.m;
        plain.f32_activations = false;  // without the mark: BF16 activations, other bits
        EXPECT_NE(run_linear(*v_, plain, x, n), y_f32) << dtype_name(d) << " n " << n;
      }
    }
}

// Every FP8 code's exact value reaches the products, subnormals included (a decode that
// shifted them into BF16 subnormals would see them read as zero by VDPBF16PS).
TEST_F(Bf16Dot, EveryFp8CodeIncludingSubnormals) {
  const int64_t cols = 256;
  std::vector<uint8_t> codes(cols);
  for (int64_t c = 0; c < cols; ++c) codes[size_t(c)] = (c & 0x7f) == 0x7f ? 0 : uint8_t(c);  // NaN codes: 0
  const Matrix w{DType::F8_E4M3, 1, cols, codes.data()};
  for (Fp8Dot how : {Fp8Dot::kLookup, Fp8Dot::kFma})
    for (int64_t c = 0; c < cols; ++c) {
      if (codes[size_t(c)] != c) continue;
      std::vector<float> x(size_t(cols), 0.0f), y(1), scratch(size_t(kLinearScratchRows * cols));
      x[size_t(c)] = 1.0f;
      bf16_variant_with(how)->linear_rows(w, x.data(), y.data(), 1, 0, 1, scratch.data());
      EXPECT_EQ(y[0], fp8e4m3_to_f32(uint8_t(c))) << "code " << c << " " << bf16_variant_with(how)->name;
    }
}

// The twin against the float32 reference: rounding an activation to BF16 (8 significant bits,
// round to nearest) moves it by at most 2^-9 of itself, and the products are exact, so a row's
// result moves by at most 2^-9 x sum |w x| (plus float32 sums, ~1e-5 of it). The bound is
// 2^-8 x sum |w x|; a dropped element or a wrong scale is >= 1e-3 of it.
TEST(Bf16DotTwin, WithinBf16RoundingOfTheFloat32Reference) {
  for (DType d : {DType::BF16, DType::F8_E4M3})
    for (const Shape& s : kShapes) {
      const Weight w = make_weight(d, s.rows, s.cols, uint32_t(s.rows + 5 * s.cols));
      const auto x = random_vec(3 * s.cols, uint32_t(s.cols));
      const auto y = run_linear(scalar::bf16dot_variant(), w.m, x, 3), y_ref = run_linear(scalar::variant(), w.m, x, 3);
      for (int64_t t = 0; t < 3; ++t)
        for (int64_t r = 0; r < s.rows; ++r) {
          double mag = 0;
          for (int64_t c = 0; c < s.cols; ++c)
            mag += std::fabs(double(w.dense[size_t(r * s.cols + c)]) * x[size_t(t * s.cols + c)]);
          const size_t i = size_t(t * s.rows + r);
          ASSERT_NEAR(y[i], y_ref[i], std::ldexp(mag, -8) + 1e-30) << dtype_name(d) << " token " << t << " row " << r;
        }
    }
}

// float32 -> BF16 as VCVTNE2PS2BF16: nearest, ties to even, subnormals read as (signed) zero.
TEST(Bf16DotTwin, RoundingAsTheInstruction) {
  EXPECT_EQ(scalar::bf16_rne_daz(1.0f), 0x3f80);
  EXPECT_EQ(scalar::bf16_rne_daz(1.0f + 0x1p-8f), 0x3f80);                // tie: to even
  EXPECT_EQ(scalar::bf16_rne_daz(1.0f + 0x1p-7f + 0x1p-8f), 0x3f82);      // tie: up to even
  EXPECT_EQ(scalar::bf16_rne_daz(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);     // above the tie
  EXPECT_EQ(scalar::bf16_rne_daz(-3.0f), 0xc040);
  EXPECT_EQ(scalar::bf16_rne_daz(1e-40f), 0x0000);                         // subnormal
  EXPECT_EQ(scalar::bf16_rne_daz(-1e-40f), 0x8000);
  EXPECT_EQ(scalar::bf16_rne_daz(0x1p-126f), 0x0080);                      // smallest normal
}

TEST(Dispatch, ActiveVariantIsTheBestSupported) {
  const Variant* best = nullptr;
  for (const Variant* v : compiled_variants())
    if (missing_cpu_feature(*v).empty()) best = v;
  ASSERT_NE(best, nullptr);
  if (std::getenv("DSV3_KERNELS") == nullptr) {
    EXPECT_STREQ(active().name, best->name);
  }
}

// "f32" names the best variant with float32 activations everywhere: what the golden tests run.
TEST(Dispatch, F32NamesTheBestFloat32Variant) {
  const Variant* best = nullptr;
  for (const Variant* v : compiled_variants())
    if (!v->bf16_activations && missing_cpu_feature(*v).empty()) best = v;
  ASSERT_NE(best, nullptr);
  EXPECT_EQ(&find_variant(kFloat32Kernels, "test"), best);
  EXPECT_FALSE(find_variant(kFloat32Kernels, "test").bf16_activations);
  EXPECT_EQ(&find_variant("scalar", "test"), &scalar::variant());
  try {
    find_variant("avx1024", "--kernels avx1024");
    FAIL() << "an unknown name must throw";
  } catch (const dsv3::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kernels avx1024: unknown kernel variant (this build has: f32, scalar"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace dsv3::kernels
