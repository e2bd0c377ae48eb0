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
  DSV3_CHECK(std::isfinite(p.presence_penalty) && std::isfinite(p.frequency_penalty), "penalties must be finite");
  for (const auto& [t, b] : p.logit_bias) DSV3_CHECK(t >= 0 && std::isfinite(b), "bad logit_bias entry for token ", t);
}

void Sampler::accept(int32_t token) {
  if (p_.presence_penalty != 0 || p_.frequency_penalty != 0) counts_[token]++;
}

std::span<const float> Sampler::adjusted(std::span<const float> logits, std::vector<float>& buf) const {
  if (!p_.adjusts_logits()) return logits;
  buf.assign(logits.begin(), logits.end());
  for (const auto& [t, c] : counts_)
    if (size_t(t) < buf.size()) buf[size_t(t)] -= p_.presence_penalty + p_.frequency_penalty * float(c);
  for (const auto& [t, b] : p_.logit_bias)
    if (size_t(t) < buf.size()) buf[size_t(t)] += b;
  return buf;
}

TokenLogprob token_logprob(std::span<const float> logits, int32_t token, int top) {
  const size_t n = logits.size();
  DSV3_ASSERT(token >= 0 && size_t(token) < n);
  const float mx = *std::max_element(logits.begin(), logits.end());
  double z = 0;
  for (float l : logits) z += std::exp(double(l - mx));
  const double log_z = double(mx) + std::log(z);
  TokenLogprob r;
  r.token = token;
  r.logprob = float(double(logits[size_t(token)]) - log_z);
  if (top > 0) {
    std::vector<int32_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    const size_t k = std::min(n, size_t(top));
    std::partial_sort(idx.begin(), idx.begin() + long(k), idx.end(), [&](int32_t a, int32_t b) {
      return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
    });
    for (size_t i = 0; i < k; ++i) r.top.push_back({idx[i], float(double(logits[size_t(idx[i])]) - log_z)});
  }
  return r;
}

std::vector<float> Sampler::probabilities(std::span<const float> raw) const {
  std::vector<float> buf;
  const std::span<const float> logits = adjusted(raw, buf);
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
  if (greedy()) {
    std::vector<float> buf;
    const std::span<const float> l = adjusted(logits, buf);
    return argmax(l.data(), int64_t(l.size()));
  }
  const std::vector<float> probs = probabilities(logits);
  return draw(probs);
}

}  // namespace dsv3
