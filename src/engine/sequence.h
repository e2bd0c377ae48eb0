// One sequence (a conversation, a request) on a model: its own KV cache and position, the
// logits after its last token, and the hidden state the MTP module reads.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/transformer.h"

namespace dsv3 {

class Sequence {
 public:
  Sequence(const Transformer& model, int64_t ctx_size);

  const Transformer& model() const { return *model_; }
  int64_t pos() const { return pos_; }
  int64_t ctx_size() const { return cache_.max_seq(); }
  int64_t room() const { return ctx_size() - pos_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // Logits after the last token fed, [vocab].
  const std::vector<float>& logits() const { return logits_; }
  // Hidden state after model.norm of the last token fed, [dim].
  const std::vector<float>& hidden() const { return hidden_; }
  KVCache& cache() { return cache_; }

  // Runs `tokens` at the current position (prefill or one decode step). Throws dsv3::Error
  // naming both lengths when they do not fit the context.
  void feed(std::span<const int32_t> tokens, ThreadPool& pool);
  // Forgets everything from position `pos` on (the cache rows are simply overwritten later).
  void truncate(int64_t pos);
  void clear() { truncate(0); }

 private:
  const Transformer* model_;
  KVCache cache_;
  int64_t pos_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_, hidden_;
};

}  // namespace dsv3
