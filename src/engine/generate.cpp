#include "engine/generate.h"

#include <algorithm>

#include "core/error.h"

namespace dsv3 {

int32_t argmax(const float* logits, int64_t n) {
  int32_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = int32_t(i);
  return best;
}

std::vector<int32_t> generate_greedy(const Transformer& model, std::span<const int32_t> prompt, KVCache& cache,
                                     const GenerateOptions& opt, ThreadPool& pool) {
  const ModelConfig& c = model.config();
  DSV3_CHECK(!prompt.empty(), "generate: empty prompt");
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  std::vector<int32_t> out;
  model.forward(prompt, 0, cache, logits.data(), /*all_logits=*/false, pool);
  int64_t pos = int64_t(prompt.size());
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    const int32_t next = argmax(logits.data(), c.vocab_size);
    out.push_back(next);
    if (opt.on_token && !opt.on_token(next)) break;
    if (opt.stop_at_eos && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end())
      break;
    if (i + 1 == opt.max_new_tokens) break;
    const int32_t tok[1] = {next};
    model.forward(tok, pos++, cache, logits.data(), false, pool);
  }
  return out;
}

}  // namespace dsv3
