#include "model/kv_cache.h"

#include "core/error.h"

namespace dsv3 {

KVCache::KVCache(const ModelConfig& c, int64_t n_layers, int64_t max_seq)
    : max_seq_(max_seq), kv_rank_(c.kv_lora_rank), rope_dim_(c.qk_rope_head_dim) {
  DSV3_CHECK(max_seq > 0, "context size must be positive, got ", max_seq);
  c_kv_.assign(size_t(n_layers), std::vector<float>(size_t(max_seq * kv_rank_)));
  k_pe_.assign(size_t(n_layers), std::vector<float>(size_t(max_seq * rope_dim_)));
}

}  // namespace dsv3
