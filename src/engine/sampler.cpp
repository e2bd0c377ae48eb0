#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "engine/generate.h"

namespace dsv3 {

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {
  DSV3_CHECK(std::isfinite(p.temperature) && p.temperature >= 0, "temperature must be >= 0, got ", p.temperature);
  DSV3_CHECK(p.top_k >= 0, "top_k must be >= 0, got ", p.top_k);
  DSV3_CHECK(p.top_p > 0 && p.top_p <= 1, "top_p must be in (0, 1], got ", p.top_p);
  DSV3_CHECK(p.min_p >= 0 && p.min_p <= 1, "min_p must be in [0, 1], got ", p.min_p);
}

std::vector<float> Sampler::probabilities(std::span<const float> logits) const {
  const size_t n = logits.size();
  std::vector<float> probs(n, 0.0f);
  if (greedy()) {
    probs[size_t(argmax(logits.data(), int64_t(n)))] = 1.0f;
    return probs;
  }
  // Softmax at temperature, in double for the normaliser.
  const float mx = *std::max_element(logits.begin(), logits.end());
  double z = 0;
  for (size_t i = 0; i < n; ++i) {
    probs[i] = float(std::exp(double(logits[i] - mx) / p_.temperature));
    z += probs[i];
  }
  for (auto& v : probs) v = float(v / z);

  // Candidates sorted by probability, highest first (ties: lower id first).
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  size_t keep = n;
  if (p_.top_k > 0) keep = std::min(keep, size_t(p_.top_k));
  const bool need_sort = keep < n || p_.top_p < 1.0f;
  auto by_prob = [&](int32_t a, int32_t b) { return probs[size_t(a)] > probs[size_t(b)] || (probs[size_t(a)] == probs[size_t(b)] && a < b); };
  if (need_sort) {
    if (p_.top_p < 1.0f) std::sort(order.begin(), order.end(), by_prob);
    else std::partial_sort(order.begin(), order.begin() + long(keep), order.end(), by_prob);
  }
  if (p_.top_p < 1.0f) {
    // Smallest prefix whose mass reaches top_p (renormalised over the top-k survivors).
    double kept_mass = 0;
    for (size_t i = 0; i < keep; ++i) kept_mass += probs[size_t(order[i])];
    double cum = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cum += probs[size_t(order[i])] / kept_mass;
      if (cum >= double(p_.top_p) - 1e-6) {  // mass "reaching" top_p up to float rounding
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  std::vector<float> out(n, 0.0f);
  if (!need_sort) {
    out = probs;
  } else {
    for (size_t i = 0; i < keep; ++i) out[size_t(order[i])] = probs[size_t(order[i])];
  }
  if (p_.min_p > 0) {
    const float pmax = *std::max_element(out.begin(), out.end());
    for (auto& v : out)
      if (v < p_.min_p * pmax) v = 0.0f;
  }
  double s = 0;
  for (float v : out) s += v;
  for (auto& v : out) v = float(v / s);
  return out;
}

float Sampler::uniform() { return std::uniform_real_distribution<float>(0.0f, 1.0f)(rng_); }

int32_t Sampler::draw(std::span<const float> weights) {
  double total = 0;
  for (float w : weights) total += w;
  DSV3_ASSERT(total > 0);
  const double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
  double cum = 0;
  int32_t last = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] <= 0) continue;
    cum += weights[i];
    last = int32_t(i);
    if (r < cum) return int32_t(i);
  }
  return last;  // r landed on the rounding residue at the very top
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (greedy()) return argmax(logits.data(), int64_t(logits.size()));
  const std::vector<float> probs = probabilities(logits);
  return draw(probs);
}

}  // namespace dsv3
