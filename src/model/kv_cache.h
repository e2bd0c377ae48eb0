// The MLA latent cache: per layer and position only the normalised latent c_kv
// (kv_lora_rank values) and the rotated decoupled key k_pe (qk_rope_head_dim values), stored
// together as one row [c_kv | k_pe] as DeepSeek serves V3 (576 values per token and layer
// instead of n_heads x (192 + 128)). BF16 (the default, as DeepSeek's own cache: 70,272 bytes
// per token on V3) halves it; F16 (GGUF models' default, as llama.cpp's) is as small with 3 more
// significant bits; F32 is the exact reference.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/dtype.h"
#include "io/config.h"
#include "kernels/matrix.h"

namespace dsv3 {

// The cache's storage type unless a caller picks one (--kv-cache f32 picks the reference's):
// BF16 for Hugging Face checkpoints, as DeepSeek's own cache (issue 20's decision).
inline constexpr DType kDefaultCacheDType = DType::BF16;
// GGUF files: F16, llama.cpp's default cache type, in the same 2 bytes. Rounding the latent to
// BF16 alone moves the kjv GGUF files' logits further from their exact-dequant logits than
// half of llama.cpp's own distance, issue 18's target; F16 moves them ~40x less (docs/gguf.md).
// F16 holds magnitudes up to 65504: the latent is RMS-normalised, and llama.cpp's F16 cache has
// held DeepSeek's k_pe since its MLA support.
inline constexpr DType kDefaultGgufCacheDType = DType::F16;

class KVCache {
 public:
  // n_layers: main layers plus any MTP layers that attend; max_seq: positions held.
  KVCache(const ModelConfig& c, int64_t n_layers, int64_t max_seq, DType dtype = kDefaultCacheDType);
  ~KVCache();
  KVCache(KVCache&& o) noexcept;
  KVCache& operator=(KVCache&& o) noexcept;

  int64_t n_layers() const { return int64_t(data_.size()); }

  int64_t max_seq() const { return max_seq_; }
  int64_t kv_lora_rank() const { return kv_rank_; }
  int64_t rope_dim() const { return rope_dim_; }
  int64_t row_size() const { return kv_rank_ + rope_dim_; }
  DType dtype() const { return dtype_; }
  size_t bytes() const;

  // Stores row (layer, pos) from float32 c_kv [kv_lora_rank] and k_pe [rope_dim].
  void store(int64_t layer, int64_t pos, const float* c_kv, const float* k_pe);
  // Row (layer, pos) as float32 [c_kv | k_pe]: a pointer into the cache when it is F32,
  // otherwise decoded into `scratch` (row_size() floats), which is returned.
  const float* row(int64_t layer, int64_t pos, float* scratch) const;
  // Rows [pos0, pos0 + n) of a layer as a [n, row_size()] matrix in the cache's dtype (a view),
  // for attention as matrix products through the kernels.
  kernels::Matrix rows(int64_t layer, int64_t pos0, int64_t n) const;
  // Rows [0, n) of every layer copied from `src`, a cache of the same layers and dtype with at
  // least n positions (another sequence's prompt rows: n > 1 samples share their prompt).
  void copy_rows(const KVCache& src, int64_t n);

  // Identity in a job over several processes: the other ranks keep a mirror of this cache under
  // `id` (model/lockstep.h), and `on_release(id)` runs when it is destroyed. 0: none.
  uint64_t id() const { return id_; }
  void set_identity(uint64_t id, std::function<void(uint64_t)> on_release);

 private:
  uint64_t id_ = 0;
  std::function<void(uint64_t)> on_release_;
  int64_t max_seq_, kv_rank_, rope_dim_;
  DType dtype_;
  std::vector<std::vector<uint8_t>> data_;  // [layer][max_seq, kv_lora_rank + rope_dim] of dtype_
};

// Where one row of a forward batch lives: its sequence's cache and its position in it. Rows of
// one batch may belong to different sequences (batched decode) or to one (prefill).
struct TokenSlot {
  KVCache* cache;
  int64_t pos;
};

}  // namespace dsv3
