// Choosing the next token from logits: greedy at temperature 0, otherwise temperature, top-k,
// top-p (nucleus) and min-p filtering, in that order (as llama.cpp and vLLM apply them), then a
// draw from a seeded RNG so that a given seed reproduces the same text.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dsv3 {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off; keeps tokens with p >= min_p * p_max
  uint64_t seed = 0;
  // OpenAI's penalties and bias, applied to the logits before everything else (greedy
  // included): logit[t] -= presence_penalty * (count[t] > 0) + frequency_penalty * count[t],
  // count[t] = times t was generated so far (Sampler::accept); logit[t] += logit_bias[t].
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
  std::vector<std::pair<int32_t, float>> logit_bias;

  bool adjusts_logits() const { return presence_penalty != 0 || frequency_penalty != 0 || !logit_bias.empty(); }
};

// A generated token's log-probability under the model's own distribution (log-softmax of the
// raw logits: before penalties, bias, temperature and filters, as vLLM's default), and the
// `top` most likely tokens with theirs (highest first, ties to the lower id).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};
TokenLogprob token_logprob(std::span<const float> logits, int32_t token, int top);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);

  const SamplingParams& params() const { return p_; }
  bool greedy() const { return p_.temperature <= 0.0f; }

  // The next token for these logits (full vocabulary).
  int32_t sample(std::span<const float> logits);
  // Records a generated token (the penalties count them).
  void accept(int32_t token);

  // The distribution sample() draws from: probabilities after temperature and all filters,
  // renormalised (zero outside the kept set). Greedy: one-hot at the argmax.
  std::vector<float> probabilities(std::span<const float> logits) const;

  // A uniform draw in [0, 1) from this sampler's RNG (speculative acceptance uses it).
  float uniform();
  // Draw an index from a (not necessarily normalised) non-negative weight vector.
  int32_t draw(std::span<const float> weights);

 private:
  // logits with the penalties and bias applied (a copy; `logits` itself when there are none).
  std::span<const float> adjusted(std::span<const float> logits, std::vector<float>& buf) const;

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> counts_;  // generated tokens (penalties only)
};

}  // namespace dsv3
