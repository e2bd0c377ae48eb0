// Rotary position embedding of DeepSeek-V3 with YaRN context extension, computed exactly as
// DeepSeek's inference/model.py (precompute_freqs_cis, MLA.softmax_scale) does.
#pragma once
#include <cstdint>
#include <vector>

#include "io/config.h"

namespace dsv3 {

class Rope {
 public:
  explicit Rope(const ModelConfig& c);

  int64_t dim() const { return dim_; }
  // Per-pair inverse frequencies (dim/2), float32 as in model.py, YaRN-corrected when enabled.
  const std::vector<float>& freqs() const { return freqs_; }
  // cos/sin of position `pos` for every pair (dim/2 each).
  void cos_sin(int64_t pos, float* cos, float* sin) const;
  // qk_head_dim^-0.5, times mscale^2 under YaRN (mscale = 0.1 * mscale_all_dim * ln(factor) + 1).
  float softmax_scale() const { return softmax_scale_; }

  // YaRN's correction range [low, high] of pair indices (model.py find_correction_range).
  static std::pair<int64_t, int64_t> correction_range(double beta_fast, double beta_slow, int64_t dim, double base,
                                                      int64_t original_max_pos);

 private:
  int64_t dim_;
  std::vector<float> freqs_;
  float softmax_scale_;
};

}  // namespace dsv3
