#include "model/transformer.h"

#include <filesystem>

#include "core/error.h"
#include "kernels/ops.h"
#include "model/mla.h"

namespace dsv3 {

Transformer::Transformer(const ModelConfig& c, const ModelWeights& w) : c_(c), w_(w), rope_(c) {}

void block_forward(const ModelConfig& c, const BlockWeights& b, const Rope& rope, KVCache& cache, int64_t cache_layer,
                   float* x, int64_t n, int64_t start_pos, ThreadPool& pool, std::vector<Routing>* routing) {
  const int64_t dim = c.hidden_size;
  const float eps = float(c.rms_norm_eps);
  std::vector<float> h(static_cast<size_t>(n * dim)), o(static_cast<size_t>(n * dim));
  // x = x + attn(attn_norm(x))
  for (int64_t t = 0; t < n; ++t) kernels::rmsnorm(x + t * dim, b.attn_norm, eps, &h[size_t(t * dim)]);
  mla_forward(c, b.attn, rope, cache, cache_layer, h.data(), n, start_pos, o.data(), pool);
  for (int64_t i = 0; i < n * dim; ++i) x[i] += o[size_t(i)];
  // x = x + ffn(ffn_norm(x))
  for (int64_t t = 0; t < n; ++t) kernels::rmsnorm(x + t * dim, b.ffn_norm, eps, &h[size_t(t * dim)]);
  if (b.is_moe)
    moe_forward(c, b.moe, h.data(), n, o.data(), pool, routing);
  else
    mlp_forward(b.mlp, h.data(), n, o.data(), pool);
  for (int64_t i = 0; i < n * dim; ++i) x[i] += o[size_t(i)];
}

void Transformer::check_inputs(std::span<const int32_t> tokens, int64_t start_pos, const KVCache& cache) const {
  const int64_t n = int64_t(tokens.size());
  DSV3_CHECK(n > 0, "forward: no tokens");
  DSV3_CHECK(start_pos >= 0 && start_pos + n <= cache.max_seq(), "context full: positions ", start_pos, "..",
             start_pos + n - 1, " do not fit a context of ", cache.max_seq(), " tokens");
  for (int32_t id : tokens)
    DSV3_CHECK(id >= 0 && id < c_.vocab_size, "token id ", id, " is outside the vocabulary [0, ", c_.vocab_size, ")");
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t start_pos, KVCache& cache, float* logits,
                          bool all_logits, ThreadPool& pool, ForwardTrace* trace, float* hidden) const {
  check_inputs(tokens, start_pos, cache);
  const int64_t n = int64_t(tokens.size()), dim = c_.hidden_size;
  if (trace) {
    trace->layer_outputs.assign(size_t(c_.num_hidden_layers), {});
    trace->routing.assign(size_t(c_.num_hidden_layers), {});
  }

  std::vector<float> x(static_cast<size_t>(n * dim));
  for (int64_t t = 0; t < n; ++t) kernels::dequant_row(w_.embed, tokens[size_t(t)], &x[size_t(t * dim)]);
  for (int64_t l = 0; l < c_.num_hidden_layers; ++l) {
    block_forward(c_, w_.layers[size_t(l)], rope_, cache, l, x.data(), n, start_pos, pool,
                  trace ? &trace->routing[size_t(l)] : nullptr);
    if (trace) trace->layer_outputs[size_t(l)].assign(x.begin(), x.end());
  }

  // Final norm in place: x becomes h, the hidden state the head and the MTP module read.
  for (int64_t t = 0; t < n; ++t)
    kernels::rmsnorm(&x[size_t(t * dim)], w_.norm, float(c_.rms_norm_eps), &x[size_t(t * dim)]);
  if (hidden) std::copy(x.begin(), x.end(), hidden);
  if (all_logits)
    kernels::linear(w_.head, x.data(), logits, n, pool);
  else
    kernels::linear(w_.head, &x[size_t((n - 1) * dim)], logits, 1, pool);
}

void Transformer::mtp_forward(int64_t depth, std::span<const int32_t> next_tokens, const float* h, int64_t start_pos,
                              KVCache& cache, float* logits, bool all_logits, ThreadPool& pool, ForwardTrace* trace,
                              float* mtp_hidden) const {
  DSV3_CHECK(depth >= 0 && depth < mtp_depth(), "this checkpoint has no MTP module ", depth,
             " (num_nextn_predict_layers ", c_.num_nextn_predict_layers, ", weights ",
             w_.mtp.empty() ? "absent" : "present", ")");
  check_inputs(next_tokens, start_pos, cache);
  const MTPWeights& m = w_.mtp[size_t(depth)];
  const int64_t n = int64_t(next_tokens.size()), dim = c_.hidden_size;
  const float eps = float(c_.rms_norm_eps);
  std::vector<float> eh(static_cast<size_t>(n * 2 * dim)), x(static_cast<size_t>(n * dim));
  for (int64_t t = 0; t < n; ++t) {
    float* e = &eh[size_t(t * 2 * dim)];
    kernels::dequant_row(m.embed, next_tokens[size_t(t)], e);
    kernels::rmsnorm(e, m.enorm, eps, e);                        // first half: enorm(embed(t[i+1]))
    kernels::rmsnorm(h + t * dim, m.hnorm, eps, e + dim);        // second half: hnorm(h[i])
  }
  kernels::linear(m.eh_proj, eh.data(), x.data(), n, pool);
  block_forward(c_, m.block, rope_, cache, c_.num_hidden_layers + depth, x.data(), n, start_pos, pool,
                trace ? &trace->mtp_routing : nullptr);
  for (int64_t t = 0; t < n; ++t) kernels::rmsnorm(&x[size_t(t * dim)], m.head_norm, eps, &x[size_t(t * dim)]);
  if (mtp_hidden) std::copy(x.begin(), x.end(), mtp_hidden);
  if (all_logits)
    kernels::linear(m.head, x.data(), logits, n, pool);
  else
    kernels::linear(m.head, &x[size_t((n - 1) * dim)], logits, 1, pool);
}

LoadedModel load_model(const std::string& dir, bool with_mtp) {
  LoadedModel m;
  m.config = ModelConfig::from_file((std::filesystem::path(dir) / "config.json").string());
  m.checkpoint = std::make_unique<Checkpoint>(Checkpoint::open(dir));
  m.model = std::make_unique<Transformer>(m.config, load_weights(*m.checkpoint, m.config, with_mtp));
  return m;
}

}  // namespace dsv3
