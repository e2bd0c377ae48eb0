#include "model/transformer.h"

#include <filesystem>

#include "core/error.h"
#include "kernels/ops.h"
#include "model/mla.h"

namespace dsv3 {

Transformer::Transformer(const ModelConfig& c, const ModelWeights& w) : c_(c), w_(w), rope_(c) {}

void Transformer::block(int64_t layer, float* x, int64_t n, int64_t start_pos, KVCache& cache, ThreadPool& pool,
                        ForwardTrace* trace) const {
  const BlockWeights& b = w_.layers[size_t(layer)];
  const int64_t dim = c_.hidden_size;
  const float eps = float(c_.rms_norm_eps);
  std::vector<float> h(static_cast<size_t>(n * dim)), o(static_cast<size_t>(n * dim));
  // x = x + attn(attn_norm(x))
  for (int64_t t = 0; t < n; ++t) kernels::rmsnorm(x + t * dim, b.attn_norm, eps, &h[size_t(t * dim)]);
  mla_forward(c_, b.attn, rope_, cache, layer, h.data(), n, start_pos, o.data(), pool);
  for (int64_t i = 0; i < n * dim; ++i) x[i] += o[size_t(i)];
  // x = x + ffn(ffn_norm(x))
  for (int64_t t = 0; t < n; ++t) kernels::rmsnorm(x + t * dim, b.ffn_norm, eps, &h[size_t(t * dim)]);
  if (b.is_moe)
    moe_forward(c_, b.moe, h.data(), n, o.data(), pool, trace ? &trace->routing[size_t(layer)] : nullptr);
  else
    mlp_forward(b.mlp, h.data(), n, o.data(), pool);
  for (int64_t i = 0; i < n * dim; ++i) x[i] += o[size_t(i)];
  if (trace) trace->layer_outputs[size_t(layer)].assign(x, x + n * dim);
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t start_pos, KVCache& cache, float* logits,
                          bool all_logits, ThreadPool& pool, ForwardTrace* trace) const {
  const int64_t n = int64_t(tokens.size()), dim = c_.hidden_size;
  DSV3_CHECK(n > 0, "forward: no tokens");
  DSV3_CHECK(start_pos >= 0 && start_pos + n <= cache.max_seq(), "context full: positions ", start_pos, "..",
             start_pos + n - 1, " do not fit a context of ", cache.max_seq(), " tokens");
  for (int32_t id : tokens)
    DSV3_CHECK(id >= 0 && id < c_.vocab_size, "token id ", id, " is outside the vocabulary [0, ", c_.vocab_size, ")");
  if (trace) {
    trace->layer_outputs.assign(size_t(c_.num_hidden_layers), {});
    trace->routing.assign(size_t(c_.num_hidden_layers), {});
  }

  std::vector<float> x(static_cast<size_t>(n * dim));
  for (int64_t t = 0; t < n; ++t) kernels::dequant_row(w_.embed, tokens[size_t(t)], &x[size_t(t * dim)]);
  for (int64_t l = 0; l < c_.num_hidden_layers; ++l) block(l, x.data(), n, start_pos, cache, pool, trace);

  hidden_.resize(size_t(n * dim));
  for (int64_t t = 0; t < n; ++t)
    kernels::rmsnorm(&x[size_t(t * dim)], w_.norm, float(c_.rms_norm_eps), &hidden_[size_t(t * dim)]);
  if (all_logits)
    kernels::linear(w_.head, hidden_.data(), logits, n, pool);
  else
    kernels::linear(w_.head, &hidden_[size_t((n - 1) * dim)], logits, 1, pool);
}

LoadedModel load_model(const std::string& dir) {
  LoadedModel m;
  m.config = ModelConfig::from_file((std::filesystem::path(dir) / "config.json").string());
  m.checkpoint = std::make_unique<Checkpoint>(Checkpoint::open(dir));
  // MTP weights are recognised (so the loader accepts them) but not bound yet: a later issue
  // (self-speculative decoding) runs them.
  m.model = std::make_unique<Transformer>(m.config, load_weights(*m.checkpoint, m.config, /*load_mtp=*/false));
  return m;
}

}  // namespace dsv3
