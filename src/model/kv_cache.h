// The MLA latent cache: per layer and position only the normalised latent c_kv
// (kv_lora_rank values) and the rotated decoupled key k_pe (qk_rope_head_dim values),
// as DeepSeek serves V3 (576 values per token and layer instead of n_heads x (192 + 128)).
#pragma once
#include <cstdint>
#include <vector>

#include "io/config.h"

namespace dsv3 {

class KVCache {
 public:
  // n_layers: main layers plus any MTP layers that attend; max_seq: positions held.
  KVCache(const ModelConfig& c, int64_t n_layers, int64_t max_seq);

  int64_t max_seq() const { return max_seq_; }
  int64_t kv_lora_rank() const { return kv_rank_; }
  int64_t rope_dim() const { return rope_dim_; }
  float* c_kv(int64_t layer, int64_t pos) { return &c_kv_[size_t(layer)][size_t(pos * kv_rank_)]; }
  float* k_pe(int64_t layer, int64_t pos) { return &k_pe_[size_t(layer)][size_t(pos * rope_dim_)]; }
  const float* c_kv(int64_t layer, int64_t pos) const { return &c_kv_[size_t(layer)][size_t(pos * kv_rank_)]; }
  const float* k_pe(int64_t layer, int64_t pos) const { return &k_pe_[size_t(layer)][size_t(pos * rope_dim_)]; }

 private:
  int64_t max_seq_, kv_rank_, rope_dim_;
  std::vector<std::vector<float>> c_kv_;  // [layer][max_seq, kv_lora_rank]
  std::vector<std::vector<float>> k_pe_;  // [layer][max_seq, qk_rope_head_dim]
};

// Where one row of a forward batch lives: its sequence's cache and its position in it. Rows of
// one batch may belong to different sequences (batched decode) or to one (prefill).
struct TokenSlot {
  KVCache* cache;
  int64_t pos;
};

}  // namespace dsv3
