// Choosing the next token from logits: greedy at temperature 0, otherwise temperature, top-k,
// top-p (nucleus) and min-p filtering, in that order (as llama.cpp and vLLM apply them), then a
// draw from a seeded RNG so that a given seed reproduces the same text.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace dsv3 {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off; keeps tokens with p >= min_p * p_max
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);

  const SamplingParams& params() const { return p_; }
  bool greedy() const { return p_.temperature <= 0.0f; }

  // The next token for these logits (full vocabulary).
  int32_t sample(std::span<const float> logits);

  // The distribution sample() draws from: probabilities after temperature and all filters,
  // renormalised (zero outside the kept set). Greedy: one-hot at the argmax.
  std::vector<float> probabilities(std::span<const float> logits) const;

  // A uniform draw in [0, 1) from this sampler's RNG (speculative acceptance uses it).
  float uniform();
  // Draw an index from a (not necessarily normalised) non-negative weight vector.
  int32_t draw(std::span<const float> weights);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

}  // namespace dsv3
