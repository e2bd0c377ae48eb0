#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace dsv3 {

namespace {
double correction_dim(double num_rotations, int64_t dim, double base, int64_t max_pos) {
  return double(dim) * std::log(double(max_pos) / (num_rotations * 2 * M_PI)) / (2 * std::log(base));
}
}  // namespace

std::pair<int64_t, int64_t> Rope::correction_range(double beta_fast, double beta_slow, int64_t dim, double base,
                                                   int64_t original_max_pos) {
  const int64_t low = int64_t(std::floor(correction_dim(beta_fast, dim, base, original_max_pos)));
  const int64_t high = int64_t(std::ceil(correction_dim(beta_slow, dim, base, original_max_pos)));
  return {std::max<int64_t>(low, 0), std::min<int64_t>(high, dim - 1)};
}

Rope::Rope(const ModelConfig& c) : dim_(c.qk_rope_head_dim) {
  const int64_t half = dim_ / 2;
  freqs_.resize(size_t(half));
  // model.py: 1 / base ** (arange(0, dim, 2, float32) / dim), in float32.
  for (int64_t i = 0; i < half; ++i)
    freqs_[size_t(i)] = float(1.0 / std::pow(c.rope_theta, double(float(2 * i) / float(dim_))));
  double scale = 1.0 / std::sqrt(double(c.qk_head_dim()));
  if (c.rope_scaling) {
    // YaRN whenever rope_scaling is yarn: model.py enables it when max_seq_len exceeds
    // original_seq_len, which holds at its default maximum length for every YaRN checkpoint.
    const RopeScaling& y = *c.rope_scaling;
    auto [low, high] = correction_range(y.beta_fast, y.beta_slow, dim_, c.rope_theta,
                                        y.original_max_position_embeddings);
    float lo = float(low), hi = float(high);
    if (lo == hi) hi += 0.001f;
    const float factor = float(y.factor);
    for (int64_t i = 0; i < half; ++i) {
      const float ramp = std::clamp((float(i) - lo) / (hi - lo), 0.0f, 1.0f);
      const float smooth = 1.0f - ramp;
      const float f = freqs_[size_t(i)];
      freqs_[size_t(i)] = f / factor * (1.0f - smooth) + f * smooth;
    }
    if (y.factor > 1.0) {
      const double mscale = 0.1 * y.mscale_all_dim * std::log(y.factor) + 1.0;
      scale *= mscale * mscale;
    }
  }
  softmax_scale_ = float(scale);
}

void Rope::cos_sin(int64_t pos, float* cos, float* sin) const {
  for (size_t i = 0; i < freqs_.size(); ++i) {
    const float angle = float(pos) * freqs_[i];  // torch.outer(t, freqs) in float32
    cos[i] = float(std::cos(double(angle)));
    sin[i] = float(std::sin(double(angle)));
  }
}

}  // namespace dsv3
