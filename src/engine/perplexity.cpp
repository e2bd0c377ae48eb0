#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace dsv3 {

double log_sum_exp(std::span<const float> logits) {
  DSV3_ASSERT(!logits.empty());
  double m = -std::numeric_limits<double>::infinity();
  for (float x : logits) m = std::max(m, double(x));
  if (!std::isfinite(m)) return m;  // all -inf (or a +inf / NaN logit): nothing sensible to normalise
  double s = 0;
  for (float x : logits) s += std::exp(double(x) - m);
  return m + std::log(s);
}

double token_nll(std::span<const float> logits, int32_t target) {
  DSV3_ASSERT(target >= 0 && size_t(target) < logits.size());
  return log_sum_exp(logits) - double(logits[size_t(target)]);
}

double kl_divergence(std::span<const float> p_logits, std::span<const float> q_logits) {
  DSV3_ASSERT(p_logits.size() == q_logits.size() && !p_logits.empty());
  const double lse_p = log_sum_exp(p_logits), lse_q = log_sum_exp(q_logits);
  double kl = 0;
  for (size_t i = 0; i < p_logits.size(); ++i) {
    const double lp = double(p_logits[i]) - lse_p;
    if (lp == -std::numeric_limits<double>::infinity()) continue;  // p_i = 0 contributes nothing
    kl += std::exp(lp) * (lp - (double(q_logits[i]) - lse_q));
  }
  return std::max(kl, 0.0);
}

int64_t argmax(std::span<const float> logits) {
  DSV3_ASSERT(!logits.empty());
  return int64_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

std::vector<ScoreWindow> plan_windows(int64_t n_tokens, int64_t ctx, int64_t stride) {
  DSV3_CHECK(n_tokens >= 2, "perplexity needs at least 2 tokens (got ", n_tokens, ")");
  DSV3_CHECK(ctx >= 2, "--ctx must be at least 2 (got ", ctx, ")");
  DSV3_CHECK(stride >= 1 && stride <= ctx, "--stride must be between 1 and --ctx (", ctx, "), got ", stride);
  std::vector<ScoreWindow> windows;
  int64_t prev_end = 1;  // targets before this one are scored (token 0 is never a target)
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + ctx, n_tokens);
    const int64_t first = std::max(prev_end, begin + 1);
    if (first < end) windows.push_back({begin, end, first});
    prev_end = end;
    if (end == n_tokens) break;
  }
  return windows;
}

double PerplexityStats::mean_nll() const {
  return tokens > 0 ? nll_sum / double(tokens) : std::numeric_limits<double>::quiet_NaN();
}
double PerplexityStats::ppl() const { return std::exp(mean_nll()); }
double PerplexityStats::bits_per_byte(int64_t bytes) const {
  return bytes > 0 ? nll_sum / std::log(2.0) / double(bytes) : std::numeric_limits<double>::quiet_NaN();
}

void AgreementStats::add(std::span<const float> ref_logits, std::span<const float> fast_logits) {
  const double kl = kl_divergence(ref_logits, fast_logits);
  kl_sum += kl;
  kl_max = std::max(kl_max, kl);
  const int64_t top_ref = argmax(ref_logits), top_fast = argmax(fast_logits);
  if (top_ref == top_fast) {
    ++top1_agree;
  } else {
    flip_margin_max = std::max(flip_margin_max, double(ref_logits[size_t(top_ref)]) - ref_logits[size_t(top_fast)]);
  }
  ++positions;
}
double AgreementStats::kl_mean() const {
  return positions > 0 ? kl_sum / double(positions) : std::numeric_limits<double>::quiet_NaN();
}
double AgreementStats::top1_agreement() const {
  return positions > 0 ? double(top1_agree) / double(positions) : std::numeric_limits<double>::quiet_NaN();
}

void score_windows(const Transformer& model, std::span<const int32_t> tokens, std::span<const ScoreWindow> windows,
                   const WindowRunOptions& opt, ThreadPool& pool,
                   const std::function<void(int64_t target, std::span<const float> logits)>& row,
                   const std::function<void(const ScoreWindow&)>& window_done) {
  if (windows.empty()) return;
  const int64_t vocab = model.config().vocab_size;
  int64_t longest = 0;
  for (const ScoreWindow& w : windows) {
    DSV3_ASSERT(w.begin >= 0 && w.begin < w.first_target && w.first_target < w.end &&
                w.end <= int64_t(tokens.size()));
    longest = std::max(longest, w.end - w.begin);
  }
  const int64_t step_max = opt.ubatch > 0 ? std::min(opt.ubatch, longest) : longest;
  // One cache for all windows: each window starts again at position 0 and overwrites the rows
  // (attention only reads positions up to the current one).
  KVCache cache = model.make_cache(longest, opt.cache_dtype);
  std::vector<float> logits(size_t(step_max * vocab));
  std::vector<TokenSlot> slots;
  std::vector<int64_t> logit_rows;
  for (const ScoreWindow& w : windows) {
    const int64_t len = w.end - w.begin, step = opt.ubatch > 0 ? opt.ubatch : len;
    const int64_t first_row = w.first_target - 1 - w.begin;  // window row whose logits score first_target
    for (int64_t p0 = 0; p0 < len; p0 += step) {
      const int64_t p1 = std::min(p0 + step, len);
      slots.clear();
      logit_rows.clear();
      for (int64_t r = p0; r < p1; ++r) {
        slots.push_back({&cache, r});
        if (r >= first_row && r < len - 1) logit_rows.push_back(r - p0);
      }
      model.forward_batch(tokens.subspan(size_t(w.begin + p0), size_t(p1 - p0)), slots, logit_rows, logits.data(),
                          pool);
      for (size_t i = 0; i < logit_rows.size(); ++i)
        row(w.begin + p0 + logit_rows[i] + 1, std::span<const float>(&logits[i * size_t(vocab)], size_t(vocab)));
    }
    if (window_done) window_done(w);
  }
}

}  // namespace dsv3
