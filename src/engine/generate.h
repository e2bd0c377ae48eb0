// Token generation on top of the model: prefill the prompt through the KV cache, then one
// token per step (as DeepSeek's generate.py does).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/transformer.h"

namespace dsv3 {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool stop_at_eos = true;
  // Called with each new token as soon as it is chosen; return false to stop.
  std::function<bool(int32_t)> on_token;
};

// Index of the largest logit (lowest index on ties).
int32_t argmax(const float* logits, int64_t n);

// Greedy continuation of `prompt` (temperature 0). The cache must hold prompt + max_new tokens.
std::vector<int32_t> generate_greedy(const Transformer& model, std::span<const int32_t> prompt, KVCache& cache,
                                     const GenerateOptions& opt, ThreadPool& pool);

}  // namespace dsv3
