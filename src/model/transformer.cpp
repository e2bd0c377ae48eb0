#include "model/transformer.h"

#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/progress.h"
#include "io/gguf_names.h"
#include "kernels/ops.h"
#include "model/mla.h"

namespace dsv3 {

Transformer::Transformer(const ModelConfig& c, const ModelWeights& w) : c_(c), w_(w), rope_(c) {}

void block_forward(const ModelConfig& c, const BlockWeights& b, const Rope& rope, int64_t cache_layer, float* x,
                   int64_t n, std::span<const TokenSlot> slots, ThreadPool& pool, std::vector<Routing>* routing,
                   MLAForm form) {
  const int64_t dim = c.hidden_size;
  const float eps = float(c.rms_norm_eps);
  std::vector<float> h(static_cast<size_t>(n * dim)), o(static_cast<size_t>(n * dim));
  // Per token, tokens split over threads: x += add (unless null), then h = norm(x) (unless null).
  auto residual_norm = [&](const float* add, const Matrix* norm) {
    pool.parallel_for(
        n,
        [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t) {
            float* xt = x + t * dim;
            if (add)
              for (int64_t i = 0; i < dim; ++i) xt[i] += add[t * dim + i];
            if (norm) kernels::rmsnorm(xt, *norm, eps, &h[size_t(t * dim)]);
          }
        },
        ThreadPool::kTokenGrain);
  };
  // x = x + attn(attn_norm(x))
  residual_norm(nullptr, &b.attn_norm);
  mla_forward(c, b.attn, rope, cache_layer, h.data(), n, slots, o.data(), pool, form);
  // x = x + ffn(ffn_norm(x))
  residual_norm(o.data(), &b.ffn_norm);
  if (b.is_moe)
    moe_forward(c, b.moe, h.data(), n, o.data(), pool, routing);
  else
    mlp_forward(b.mlp, h.data(), n, o.data(), pool);
  residual_norm(o.data(), nullptr);
}

namespace {
// Rows of one sequence at consecutive positions from start_pos.
std::vector<TokenSlot> consecutive(KVCache& cache, int64_t start_pos, int64_t n) {
  std::vector<TokenSlot> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) s[size_t(i)] = {&cache, start_pos + i};
  return s;
}
std::vector<int64_t> logit_rows_for(int64_t n, bool all) {
  std::vector<int64_t> r;
  for (int64_t i = all ? 0 : n - 1; i < n; ++i) r.push_back(i);
  return r;
}
}  // namespace

void Transformer::check_inputs(std::span<const int32_t> tokens, std::span<const TokenSlot> slots) const {
  DSV3_CHECK(!tokens.empty(), "forward: no tokens");
  DSV3_ASSERT(tokens.size() == slots.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t id = tokens[i];
    DSV3_CHECK(id >= 0 && id < c_.vocab_size, "token id ", id, " is outside the vocabulary [0, ", c_.vocab_size, ")");
    const TokenSlot& s = slots[i];
    DSV3_CHECK(s.pos >= 0 && s.pos < s.cache->max_seq(), "context full: position ", s.pos,
               " does not fit a context of ", s.cache->max_seq(), " tokens");
  }
}

void Transformer::head(const Matrix& w, const float* x, std::span<const int64_t> rows, float* logits,
                       ThreadPool& pool) const {
  const int64_t dim = c_.hidden_size, n = int64_t(rows.size());
  bool contiguous = true;
  for (int64_t i = 1; i < n; ++i) contiguous = contiguous && rows[size_t(i)] == rows[0] + i;
  if (contiguous) {
    kernels::linear(w, x + rows[0] * dim, logits, n, pool);
    return;
  }
  std::vector<float> sel(static_cast<size_t>(n * dim));
  for (int64_t i = 0; i < n; ++i) std::copy(x + rows[size_t(i)] * dim, x + (rows[size_t(i)] + 1) * dim, &sel[size_t(i * dim)]);
  kernels::linear(w, sel.data(), logits, n, pool);
}

void Transformer::forward_batch(std::span<const int32_t> tokens, std::span<const TokenSlot> slots,
                                std::span<const int64_t> logit_rows, float* logits, ThreadPool& pool,
                                ForwardTrace* trace, float* hidden, MLAForm form) const {
  check_inputs(tokens, slots);
  if (form == MLAForm::Auto) form = mla_form_;
  const int64_t n = int64_t(tokens.size()), dim = c_.hidden_size;
  if (trace) {
    trace->layer_outputs.assign(size_t(c_.num_hidden_layers), {});
    trace->routing.assign(size_t(c_.num_hidden_layers), {});
  }
  std::vector<float> x(static_cast<size_t>(n * dim));
  for (int64_t t = 0; t < n; ++t) kernels::dequant_row(w_.embed, tokens[size_t(t)], &x[size_t(t * dim)]);
  for (int64_t l = 0; l < c_.num_hidden_layers; ++l) {
    block_forward(c_, w_.layers[size_t(l)], rope_, l, x.data(), n, slots, pool,
                  trace ? &trace->routing[size_t(l)] : nullptr, form);
    if (trace && trace->record_layer_outputs) trace->layer_outputs[size_t(l)].assign(x.begin(), x.end());
  }
  // Final norm in place: x becomes h, the hidden state the head and the MTP module read.
  for (int64_t t = 0; t < n; ++t)
    kernels::rmsnorm(&x[size_t(t * dim)], w_.norm, float(c_.rms_norm_eps), &x[size_t(t * dim)]);
  if (hidden) std::copy(x.begin(), x.end(), hidden);
  if (!logit_rows.empty()) head(w_.head, x.data(), logit_rows, logits, pool);
}

void Transformer::forward(std::span<const int32_t> tokens, int64_t start_pos, KVCache& cache, float* logits,
                          bool all_logits, ThreadPool& pool, ForwardTrace* trace, float* hidden) const {
  const int64_t n = int64_t(tokens.size());
  DSV3_CHECK(n > 0, "forward: no tokens");
  DSV3_CHECK(start_pos >= 0 && start_pos + n <= cache.max_seq(), "context full: positions ", start_pos, "..",
             start_pos + n - 1, " do not fit a context of ", cache.max_seq(), " tokens");
  const auto slots = consecutive(cache, start_pos, n);
  forward_batch(tokens, slots, logit_rows_for(n, all_logits), logits, pool, trace, hidden);
}

void Transformer::mtp_forward(int64_t depth, std::span<const int32_t> next_tokens, const float* h, int64_t start_pos,
                              KVCache& cache, float* logits, bool all_logits, ThreadPool& pool, ForwardTrace* trace,
                              float* mtp_hidden) const {
  DSV3_CHECK(depth >= 0 && depth < mtp_depth(), "this checkpoint has no MTP module ", depth,
             " (num_nextn_predict_layers ", c_.num_nextn_predict_layers, ", weights ",
             w_.mtp.empty() ? "absent" : "present", ")");
  const int64_t n = int64_t(next_tokens.size()), dim = c_.hidden_size;
  DSV3_CHECK(n > 0 && start_pos >= 0 && start_pos + n <= cache.max_seq(), "context full: MTP positions ", start_pos,
             "..", start_pos + n - 1, " do not fit a context of ", cache.max_seq(), " tokens");
  const auto slots = consecutive(cache, start_pos, n);
  check_inputs(next_tokens, slots);
  const MTPWeights& m = w_.mtp[size_t(depth)];
  const float eps = float(c_.rms_norm_eps);
  std::vector<float> eh(static_cast<size_t>(n * 2 * dim)), x(static_cast<size_t>(n * dim));
  for (int64_t t = 0; t < n; ++t) {
    float* e = &eh[size_t(t * 2 * dim)];
    kernels::dequant_row(m.embed, next_tokens[size_t(t)], e);
    kernels::rmsnorm(e, m.enorm, eps, e);                  // first half: enorm(embed(t[i+1]))
    kernels::rmsnorm(h + t * dim, m.hnorm, eps, e + dim);  // second half: hnorm(h[i])
  }
  kernels::linear(m.eh_proj, eh.data(), x.data(), n, pool);
  block_forward(c_, m.block, rope_, c_.num_hidden_layers + depth, x.data(), n, slots, pool,
                trace ? &trace->mtp_routing : nullptr, mla_form_);
  for (int64_t t = 0; t < n; ++t) kernels::rmsnorm(&x[size_t(t * dim)], m.head_norm, eps, &x[size_t(t * dim)]);
  if (mtp_hidden) std::copy(x.begin(), x.end(), mtp_hidden);
  head(m.head, x.data(), logit_rows_for(n, all_logits), logits, pool);
}

uint64_t LoadedModel::file_bytes() const { return gguf ? gguf->file_bytes() : checkpoint->file_bytes(); }

void LoadedModel::populate() const {
  if (gguf) gguf->populate();
  else checkpoint->populate();
}

std::optional<size_t> LoadedModel::huge_page_bytes() const {
  return gguf ? gguf->huge_page_bytes() : checkpoint->huge_page_bytes();
}

LoadedModel load_model(const std::string& path, bool with_mtp, const LoadOptions& load) {
  LoadedModel m;
  const bool gguf = GgufModel::is_gguf_path(path);
  if (!gguf) m.config = ModelConfig::from_file((std::filesystem::path(path) / "config.json").string());
  LoadOptions opt = load;
  std::optional<Progress> progress;
  if (!opt.mmap) {  // reading gigabytes takes a while: show it
    uint64_t total = 0;
    if (gguf) {
      total = std::filesystem::file_size(path);  // a split set shows its first part's size as the total
    } else if (std::filesystem::is_directory(path)) {
      for (const auto& e : std::filesystem::directory_iterator(path))
        if (e.path().extension() == ".safetensors") total += e.file_size();
    }
    progress.emplace("loading " + std::filesystem::path(path).filename().string(), total, "B");
    opt.on_read = [](void* ctx, size_t n) { static_cast<Progress*>(ctx)->advance(n); };
    opt.on_read_ctx = &*progress;
  }
  if (gguf) {
    m.gguf = std::make_unique<GgufModel>(GgufModel::open(path, opt));
    if (progress) progress->finish();
    m.config = gguf::config_from_gguf(*m.gguf);
    m.model = std::make_unique<Transformer>(m.config, load_weights(*m.gguf, m.config, with_mtp));
    return m;
  }
  m.checkpoint = std::make_unique<Checkpoint>(Checkpoint::open(path, true, opt));
  if (progress) progress->finish();
  m.model = std::make_unique<Transformer>(m.config, load_weights(*m.checkpoint, m.config, with_mtp));
  return m;
}

}  // namespace dsv3
