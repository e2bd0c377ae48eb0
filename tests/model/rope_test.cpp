// Rotary embedding and YaRN tables against values derived by hand from model.py's formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/ops.h"
#include "model/rope.h"

namespace dsv3 {
namespace {

ModelConfig v3_rope_config(bool yarn) {
  ModelConfig c;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.rope_theta = 10000;
  if (yarn) c.rope_scaling = RopeScaling{40.0, 4096, 32.0, 1.0, 1.0, 1.0};
  return c;
}

TEST(Rope, PlainFrequenciesAndSoftmaxScale) {
  Rope r(v3_rope_config(false));
  ASSERT_EQ(r.freqs().size(), 32u);
  for (size_t i = 0; i < 32; ++i) EXPECT_FLOAT_EQ(r.freqs()[i], float(std::pow(10000.0, -double(2 * i) / 64)));
  EXPECT_FLOAT_EQ(r.softmax_scale(), float(1 / std::sqrt(192.0)));
}

TEST(Rope, YarnCorrectionRangeOfDeepSeekV3) {
  // dim * ln(4096 / (beta * 2 pi)) / (2 ln 10000): beta_fast 32 -> 10.47 (floor 10), beta_slow 1 -> 22.51 (ceil 23).
  auto [low, high] = Rope::correction_range(32, 1, 64, 10000, 4096);
  EXPECT_EQ(low, 10);
  EXPECT_EQ(high, 23);
}

TEST(Rope, YarnFrequenciesAndMscale) {
  Rope plain(v3_rope_config(false)), yarn(v3_rope_config(true));
  for (size_t i = 0; i < 32; ++i) {
    const float f = plain.freqs()[i];
    const float ramp = std::clamp((float(i) - 10.0f) / 13.0f, 0.0f, 1.0f), smooth = 1 - ramp;
    EXPECT_FLOAT_EQ(yarn.freqs()[i], f / 40.0f * (1 - smooth) + f * smooth) << i;
  }
  // High-frequency pairs (below the range) keep their frequency; low-frequency ones are divided by 40.
  EXPECT_FLOAT_EQ(yarn.freqs()[0], plain.freqs()[0]);
  EXPECT_FLOAT_EQ(yarn.freqs()[31], plain.freqs()[31] / 40.0f);
  const double mscale = 0.1 * std::log(40.0) + 1.0;
  EXPECT_NEAR(yarn.softmax_scale(), mscale * mscale / std::sqrt(192.0), 1e-7);
}

TEST(Rope, RotatesInterleavedPairs) {
  // Pair (x0, x1) rotates by angle a, pair (x2, x3) by b: the complex-number view of model.py.
  float x[4] = {1.0f, 0.0f, 0.0f, 2.0f};
  const float a = 0.5f, b = 1.25f;
  const float cos[2] = {std::cos(a), std::cos(b)}, sin[2] = {std::sin(a), std::sin(b)};
  kernels::rope_interleaved(x, cos, sin, 4);
  EXPECT_FLOAT_EQ(x[0], std::cos(a));
  EXPECT_FLOAT_EQ(x[1], std::sin(a));
  EXPECT_FLOAT_EQ(x[2], -2 * std::sin(b));
  EXPECT_FLOAT_EQ(x[3], 2 * std::cos(b));
}

TEST(Rope, PositionAnglesAreFloat32Products) {
  Rope r(v3_rope_config(false));
  std::vector<float> cos(32), sin(32);
  r.cos_sin(1000, cos.data(), sin.data());
  for (size_t i = 0; i < 32; ++i) {
    const float angle = 1000.0f * r.freqs()[i];
    EXPECT_FLOAT_EQ(cos[i], float(std::cos(double(angle))));
    EXPECT_FLOAT_EQ(sin[i], float(std::sin(double(angle))));
  }
}

}  // namespace
}  // namespace dsv3
