// The DeepSeek-V3 decoder (model.py classes Block and Transformer): embedding, blocks of
// norm -> MLA -> residual -> norm -> MLP or MoE -> residual, final norm, lm_head.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "model/kv_cache.h"
#include "model/moe.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv3 {

// Optional per-forward outputs used by tests and `dsv3 logits` for bisecting mismatches.
struct ForwardTrace {
  std::vector<std::vector<float>> layer_outputs;        // [layer][n * dim] residual after each block
  std::vector<std::vector<Routing>> routing;            // [layer][token] (empty for dense layers)
};

class Transformer {
 public:
  Transformer(const ModelConfig& c, const ModelWeights& w);

  const ModelConfig& config() const { return c_; }
  const ModelWeights& weights() const { return w_; }

  // A cache sized for `max_seq` positions of the main layers.
  KVCache make_cache(int64_t max_seq) const { return KVCache(c_, c_.num_hidden_layers, max_seq); }

  // Runs tokens at positions [start_pos, start_pos + n), appending to `cache`. Writes logits
  // [n, vocab] (all_logits) or [1, vocab] for the last token only. Positions before start_pos
  // must already be in the cache. Throws dsv3::Error on bad ids or a full cache.
  void forward(std::span<const int32_t> tokens, int64_t start_pos, KVCache& cache, float* logits, bool all_logits,
               ThreadPool& pool, ForwardTrace* trace = nullptr) const;

  // The final hidden states after model.norm, [n, dim], from the last forward (what the MTP module reads).
  const std::vector<float>& last_hidden() const { return hidden_; }

 private:
  void block(int64_t layer, float* x, int64_t n, int64_t start_pos, KVCache& cache, ThreadPool& pool,
             ForwardTrace* trace) const;

  ModelConfig c_;
  ModelWeights w_;
  Rope rope_;
  mutable std::vector<float> hidden_;
};

// A loaded model: the mapped checkpoint and the transformer over its weights.
struct LoadedModel {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Transformer> model;
};
LoadedModel load_model(const std::string& dir);

}  // namespace dsv3
