#include "model/kv_cache.h"

#include <cstring>
#include <utility>

#include "core/error.h"

namespace dsv3 {

KVCache::KVCache(const ModelConfig& c, int64_t n_layers, int64_t max_seq, DType dtype)
    : max_seq_(max_seq), kv_rank_(c.kv_lora_rank), rope_dim_(c.qk_rope_head_dim), dtype_(dtype) {
  DSV3_CHECK(max_seq > 0, "context size must be positive, got ", max_seq);
  DSV3_CHECK(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16,
             "KV cache dtype must be F32, BF16 or F16, got ", dtype_name(dtype));
  data_.assign(size_t(n_layers), std::vector<uint8_t>(size_t(max_seq * row_size()) * dtype_size(dtype)));
}

KVCache::~KVCache() {
  if (on_release_) on_release_(id_);
}

KVCache::KVCache(KVCache&& o) noexcept
    : id_(std::exchange(o.id_, 0)), on_release_(std::exchange(o.on_release_, nullptr)), max_seq_(o.max_seq_),
      kv_rank_(o.kv_rank_), rope_dim_(o.rope_dim_), dtype_(o.dtype_), data_(std::move(o.data_)) {}

KVCache& KVCache::operator=(KVCache&& o) noexcept {
  if (this == &o) return *this;
  if (on_release_) on_release_(id_);
  id_ = std::exchange(o.id_, 0);
  on_release_ = std::exchange(o.on_release_, nullptr);
  max_seq_ = o.max_seq_;
  kv_rank_ = o.kv_rank_;
  rope_dim_ = o.rope_dim_;
  dtype_ = o.dtype_;
  data_ = std::move(o.data_);
  return *this;
}

void KVCache::set_identity(uint64_t id, std::function<void(uint64_t)> on_release) {
  id_ = id;
  on_release_ = std::move(on_release);
}

void KVCache::copy_rows(const KVCache& src, int64_t n) {
  DSV3_CHECK(src.n_layers() == n_layers() && src.dtype_ == dtype_ && src.row_size() == row_size() && n >= 0 &&
                 n <= max_seq_ && n <= src.max_seq_,
             "KV cache rows cannot be copied between caches of different shapes");
  const size_t bytes = size_t(n * row_size()) * dtype_size(dtype_);
  if (bytes == 0) return;
  for (size_t l = 0; l < data_.size(); ++l) std::memcpy(data_[l].data(), src.data_[l].data(), bytes);
}

size_t KVCache::bytes() const { return data_.empty() ? 0 : data_.size() * data_[0].size(); }

void KVCache::store(int64_t layer, int64_t pos, const float* c_kv, const float* k_pe) {
  DSV3_ASSERT(pos >= 0 && pos < max_seq_);
  uint8_t* dst = &data_[size_t(layer)][size_t(pos * row_size()) * dtype_size(dtype_)];
  if (dtype_ == DType::F32) {
    std::memcpy(dst, c_kv, size_t(kv_rank_) * 4);
    std::memcpy(dst + kv_rank_ * 4, k_pe, size_t(rope_dim_) * 4);
    return;
  }
  uint16_t* d = reinterpret_cast<uint16_t*>(dst);
  const auto round = [f16 = dtype_ == DType::F16](float v) { return f16 ? f32_to_f16(v) : f32_to_bf16(v); };
  for (int64_t i = 0; i < kv_rank_; ++i) d[i] = round(c_kv[i]);
  for (int64_t i = 0; i < rope_dim_; ++i) d[kv_rank_ + i] = round(k_pe[i]);
}

const float* KVCache::row(int64_t layer, int64_t pos, float* scratch) const {
  const uint8_t* src = &data_[size_t(layer)][size_t(pos * row_size()) * dtype_size(dtype_)];
  if (dtype_ == DType::F32) return reinterpret_cast<const float*>(src);
  const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
  if (dtype_ == DType::F16)
    for (int64_t i = 0; i < row_size(); ++i) scratch[i] = f16_to_f32(s[i]);
  else
    for (int64_t i = 0; i < row_size(); ++i) scratch[i] = bf16_to_f32(s[i]);
  return scratch;
}

kernels::Matrix KVCache::rows(int64_t layer, int64_t pos0, int64_t n) const {
  DSV3_ASSERT(pos0 >= 0 && n >= 0 && pos0 + n <= max_seq_);
  return {dtype_, n, row_size(), &data_[size_t(layer)][size_t(pos0 * row_size()) * dtype_size(dtype_)]};
}

}  // namespace dsv3
