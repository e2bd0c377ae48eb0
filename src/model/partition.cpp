#include "model/partition.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/ops.h"

namespace dsv3 {

Partition Partition::of(Collectives* comm) {
  if (comm == nullptr || comm->size() == 1) return {};
  return Partition{comm->rank(), comm->size(), comm};
}

Range Partition::share(int64_t n, int64_t align) const {
  const int64_t groups = (n + align - 1) / align, base = groups / size, extra = groups % size;
  const int64_t g0 = rank * base + std::min<int64_t>(rank, extra), g1 = g0 + base + (rank < extra ? 1 : 0);
  return {std::min(n, g0 * align), std::min(n, g1 * align)};
}

Range Partition::hidden_units(const MLPWeights& full) const {
  const int64_t inter = full.w1.rows;
  const Matrix& w2 = full.w2;
  if (w2.quantized() && (inter + w2.block_cols - 1) / w2.block_cols >= size) return share(inter, w2.block_cols);
  return share(inter);
}

void check_layout(const ModelConfig& c, int size) {
  if (size <= 1) return;
  auto need = [&](int64_t units, const char* what, const char* key) {
    if (units < size)
      throw JobError(str_cat("cannot split this model over ", size, " ranks: it has only ", units, " ", what, " (",
                             key, "), and every rank needs at least one; run with -np ", units, " or fewer"));
  };
  need(c.num_attention_heads, "attention heads", "num_attention_heads");
  if (c.n_routed_experts > 0) need(c.n_routed_experts, "routed experts", "n_routed_experts");
  need(c.vocab_size, "vocabulary rows", "vocab_size");
}

namespace {

// Columns [c0, c0 + n) of w as a matrix of their own, in memory kept alive by `storage`.
Matrix column_slice(const Matrix& w, int64_t c0, int64_t n, std::vector<std::shared_ptr<const void>>& storage) {
  DSV3_ASSERT(c0 >= 0 && n > 0 && c0 + n <= w.cols && w.row0 == 0);
  const bool splits_fp8_block = w.quantized() && c0 % w.block_cols != 0;
  const bool splits_ggml_block = !dtype_whole_blocks(w.dtype, c0) || !dtype_whole_blocks(w.dtype, n);
  if (splits_fp8_block || splits_ggml_block) {
    // Inside a scale block (or a ggml block): the slice would need two scales per block row.
    // F32 holds every dequantized value exactly.
    auto buf = std::make_shared<std::vector<float>>(size_t(w.rows * n));
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = 0; r < w.rows; ++r) {
      kernels::dequant_row(w, r, row.data());
      std::copy(&row[size_t(c0)], &row[size_t(c0 + n)], &(*buf)[size_t(r * n)]);
    }
    Matrix m;
    m.dtype = DType::F32;
    m.rows = w.rows;
    m.cols = n;
    m.data = buf->data();
    storage.push_back(buf);
    return m;
  }
  Matrix m = w;
  m.cols = n;
  const size_t skip = dtype_row_bytes(w.dtype, c0), len = m.row_bytes(), stride = w.row_bytes();
  auto buf = std::make_shared<std::vector<uint8_t>>(size_t(w.rows) * len);
  const uint8_t* src = static_cast<const uint8_t*>(w.data);
  for (int64_t r = 0; r < w.rows; ++r) std::memcpy(&(*buf)[size_t(r) * len], src + size_t(r) * stride + skip, len);
  m.data = buf->data();
  storage.push_back(buf);
  if (w.quantized()) {  // the scale columns of the slice's blocks
    const int64_t b0 = c0 / w.block_cols, nb = (n + w.block_cols - 1) / w.block_cols,
                  brows = (w.rows + w.block_rows - 1) / w.block_rows;
    auto sc = std::make_shared<std::vector<float>>(size_t(brows * nb));
    for (int64_t br = 0; br < brows; ++br)
      std::memcpy(&(*sc)[size_t(br * nb)], w.scale + br * w.scale_cols + b0, size_t(nb) * sizeof(float));
    m.scale = sc->data();
    m.scale_cols = nb;
    storage.push_back(sc);
  }
  return m;
}

struct Sharder {
  const ModelConfig& c;
  const Partition& p;
  std::vector<std::shared_ptr<const void>>& storage;

  void mlp(MLPWeights& m) {
    const Range u = p.hidden_units(m);
    m.w2 = column_slice(m.w2, u.begin, u.size(), storage);
    m.w1 = m.w1.row_slice(u.begin, u.size());
    m.w3 = m.w3.row_slice(u.begin, u.size());
  }

  void block(BlockWeights& b) {
    MLAWeights& a = b.attn;
    const Range h = p.heads(c);
    const int64_t dqk = c.qk_head_dim(), dkv = c.qk_nope_head_dim + c.v_head_dim, dv = c.v_head_dim;
    if (c.q_lora_rank == 0)
      a.wq = a.wq.row_slice(h.begin * dqk, h.size() * dqk);
    else
      a.wq_b = a.wq_b.row_slice(h.begin * dqk, h.size() * dqk);
    if (a.has_wkv_b()) a.wkv_b = a.wkv_b.row_slice(h.begin * dkv, h.size() * dkv);
    if (a.has_split_kv_b()) {  // GGUF's attn_k_b [heads * rank, dn] and attn_v_b [heads * dv, rank]
      a.wk_b = a.wk_b.row_slice(h.begin * c.kv_lora_rank, h.size() * c.kv_lora_rank);
      a.wv_b = a.wv_b.row_slice(h.begin * dv, h.size() * dv);
    }
    a.wo = column_slice(a.wo, h.begin * dv, h.size() * dv, storage);
    if (!b.is_moe) return mlp(b.mlp);
    MoEWeights& moe = b.moe;
    const Range e = p.experts(c);
    for (int64_t i = 0; i < int64_t(moe.experts.size()); ++i)
      if (!e.contains(i)) moe.experts[size_t(i)] = MLPWeights{};
    moe.experts_begin = e.begin;
    moe.experts_end = e.end;
    if (moe.shared.w1.data) mlp(moe.shared);
  }
};

}  // namespace

ModelWeights shard_weights(const ModelWeights& full, const ModelConfig& c, const Partition& p) {
  if (p.size == 1) return full;
  check_layout(c, p.size);
  ModelWeights w = full;
  Sharder s{c, p, w.storage};
  const Range v = p.vocab(c);
  w.embed = w.embed.row_slice(v.begin, v.size());
  w.head = w.head.row_slice(v.begin, v.size());
  for (BlockWeights& b : w.layers) s.block(b);
  for (MTPWeights& m : w.mtp) {
    m.embed = m.embed.row_slice(v.begin, v.size());
    m.head = m.head.row_slice(v.begin, v.size());
    s.block(m.block);
  }
  return w;
}

}  // namespace dsv3
