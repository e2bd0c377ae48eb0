// Perplexity of a token sequence and the agreement of two runs of a model (fast vs reference):
// the windows a long sequence is scored in, the per-position math (log-softmax and KL in
// double precision), and the loop that feeds windows through a Transformer.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/transformer.h"

namespace dsv3 {

// log(sum_i exp(x_i)), accumulated in double around the maximum. Precondition: x non-empty.
double log_sum_exp(std::span<const float> logits);
// -log softmax(logits)[target] in nats. Precondition: 0 <= target < logits.size().
double token_nll(std::span<const float> logits, int32_t target);
// KL(P || Q) in nats with P = softmax(p_logits), Q = softmax(q_logits): sum_i p_i (log p_i - log q_i),
// in double, clamped at 0 (it is never negative; round-off can be). Same length required.
double kl_divergence(std::span<const float> p_logits, std::span<const float> q_logits);
// Index of the largest logit (the first on ties).
int64_t argmax(std::span<const float> logits);

// One window of the scoring plan: the model reads tokens [begin, end) from position 0 of a fresh
// cache, and the targets tokens[first_target .. end) are scored, target j from the logits after
// token j - 1 (window row j - 1 - begin).
struct ScoreWindow {
  int64_t begin = 0, end = 0, first_target = 1;
  int64_t scored() const { return end - first_target; }
};

// Windows over n_tokens tokens, as Hugging Face's perplexity recipe does: window k starts at
// k * stride and holds up to ctx tokens; it scores only the targets no earlier window scored.
// stride == ctx gives non-overlapping chunks (llama.cpp's perplexity; the first token of each
// chunk after the first is context only, never a target); stride < ctx a sliding window in which
// every target after the first window has at least ctx - stride tokens of context.
// Throws dsv3::Error unless n_tokens >= 2, ctx >= 2 and 1 <= stride <= ctx.
std::vector<ScoreWindow> plan_windows(int64_t n_tokens, int64_t ctx, int64_t stride);

// Running perplexity: the sum of per-target NLL (nats) over the targets scored so far.
struct PerplexityStats {
  double nll_sum = 0;
  int64_t tokens = 0;
  void add(double nll) { nll_sum += nll, ++tokens; }
  double mean_nll() const;  // nats per token
  double ppl() const;       // exp(mean_nll)
  // Total NLL in bits divided by the UTF-8 bytes the scored targets stand for.
  double bits_per_byte(int64_t bytes) const;
};

// Running agreement of a run against a reference over the same positions.
struct AgreementStats {
  double kl_sum = 0, kl_max = 0;
  int64_t positions = 0, top1_agree = 0;
  // Over the positions where the top-1 tokens differ: the largest reference logit margin
  // ref[ref's top-1] - ref[fast's top-1] (0 if none). A tiny value means the flips are near-ties.
  double flip_margin_max = 0;
  // Adds one position: KL(reference || fast) and whether both put the same token first.
  void add(std::span<const float> ref_logits, std::span<const float> fast_logits);
  double kl_mean() const;
  double top1_agreement() const;  // share of positions in [0, 1]
};

struct WindowRunOptions {
  DType cache_dtype = DType::BF16;
  // Tokens per forward call within a window (0: the whole window at once, as a prefill).
  // 1 runs every token through the decode path; either way every scored row's logits are kept.
  int64_t ubatch = 0;
};

// Runs `model` over each window of `tokens` in order and calls row(target, logits) for every
// scored target, in increasing target order, with that target's logits [vocab]; window_done
// (optional) after each window. Logits are computed only for scored rows; memory beyond the
// cache is one forward call's scored rows x vocab floats.
void score_windows(const Transformer& model, std::span<const int32_t> tokens, std::span<const ScoreWindow> windows,
                   const WindowRunOptions& opt, ThreadPool& pool,
                   const std::function<void(int64_t target, std::span<const float> logits)>& row,
                   const std::function<void(const ScoreWindow&)>& window_done = {});

}  // namespace dsv3
