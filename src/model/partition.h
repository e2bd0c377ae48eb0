// How a model is split over the ranks of an MPI job, as DeepSeek's inference/model.py splits it
// over world_size GPUs (docs/distributed.md): attention heads (wq_b, wkv_b by rows, wo by
// input features), the dense MLP and shared experts (w1/w3 by rows, w2 by input features),
// routed experts in contiguous blocks, embed_tokens and lm_head by vocabulary. wq_a, wkv_a, the
// norms, the router gate and the latent KV cache are the same on every rank. Each rank's partial
// attention and FFN outputs are summed in rank order (Collectives::sum), so every rank holds the
// same hidden states bit for bit and routes identically. One process is the partition of size 1.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/collectives.h"
#include "io/config.h"
#include "model/weights.h"

namespace dsv3 {

struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool contains(int64_t i) const { return i >= begin && i < end; }
};

struct Partition {
  int rank = 0, size = 1;
  Collectives* comm = nullptr;  // null in one process

  // The partition of `comm`'s job (rank, size), or of one process for null.
  static Partition of(Collectives* comm);

  // This rank's contiguous block of n units: blocks in rank order, the first n % size ranks
  // one unit more (np 3 on 128 heads: 43, 43, 42).
  Range share(int64_t n) const { return share(n, 1); }
  // The same in groups of `align` units (the last group may be short), so that boundaries fall
  // on group edges.
  Range share(int64_t n, int64_t align) const;

  Range heads(const ModelConfig& c) const { return share(c.num_attention_heads); }
  Range experts(const ModelConfig& c) const { return share(c.n_routed_experts); }
  Range vocab(const ModelConfig& c) const { return share(c.vocab_size); }
  // The share of an MLP's hidden units: on whole FP8 scale blocks of w2's input features when
  // there are at least as many blocks as ranks, so w2's slice keeps its scales as they are.
  Range hidden_units(const MLPWeights& full) const;

  // x[n] = sum over ranks of x[n], in rank order; nothing in one process.
  void sum(float* x, size_t n) const {
    if (size > 1) comm->sum(x, n);
  }
};

// Throws JobError when `size` ranks cannot split a model of config c (more ranks than
// attention heads, routed experts, or vocabulary rows). Needs only the config: run it before
// any weight is touched.
void check_layout(const ModelConfig& c, int size);

// This rank's weights, cut from the full model's views (load_weights): row slices stay views
// into the checkpoint (a slice inside a 128x128 FP8 block keeps its scales through
// Matrix::row0); slices by input features (wo, w2) are copied into rank-local memory, FP8
// bytes and their scale columns as they are when the slice starts on a scale block, exactly
// dequantized to F32 otherwise (only models whose head widths are not multiples of 128).
// Experts of other ranks are left unbound. For size 1, returns `full`.
ModelWeights shard_weights(const ModelWeights& full, const ModelConfig& c, const Partition& p);

}  // namespace dsv3
