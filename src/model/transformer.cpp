#include "model/transformer.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include "core/error.h"
#include "core/progress.h"
#include "io/gguf_names.h"
#include "kernels/ops.h"
#include "kernels/variant.h"
#include "model/mla.h"

namespace dsv3 {

Transformer::Transformer(const ModelConfig& c, const ModelWeights& w, Partition part)
    : c_(c), w_(w), part_(part), rope_(c) {
  if (part_.size > 1 && part_.rank == 0) driver_ = std::make_unique<StepDriver>(*part_.comm);
}

Transformer::~Transformer() = default;

KVCache Transformer::make_cache(int64_t max_seq, DType dtype) const {
  KVCache cache(c_, c_.num_hidden_layers + int64_t(w_.mtp.size()), max_seq, dtype);
  if (driver_) driver_->adopt(cache);
  return cache;
}

void Transformer::copy_cache_rows(const KVCache& src, KVCache& dst, int64_t n) const {
  if (driver_) driver_->announce_copy(src, dst, n);
  dst.copy_rows(src, n);
  if (driver_) driver_->step_done();
}

void Transformer::release_followers() {
  if (driver_) driver_->finish();
}

void block_forward(const ModelConfig& c, const BlockWeights& b, const Rope& rope, int64_t cache_layer, float* x,
                   int64_t n, std::span<const TokenSlot> slots, ThreadPool& pool, std::vector<Routing>* routing,
                   MLAForm form, const Partition& part, double* attention_seconds) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = attention_seconds ? Clock::now() : Clock::time_point{};
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
  part.sum(o.data(), o.size());  // this rank's heads' share of wo -> all heads
  if (attention_seconds) *attention_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  // x = x + ffn(ffn_norm(x))
  residual_norm(o.data(), &b.ffn_norm);
  if (b.is_moe)
    moe_forward(c, b.moe, h.data(), n, o.data(), pool, routing);
  else
    mlp_forward(b.mlp, h.data(), n, o.data(), pool);
  part.sum(o.data(), o.size());  // routed and shared experts' shares together
  residual_norm(o.data(), nullptr);
}

namespace {
// Rows of one sequence at consecutive positions from start_pos.
std::vector<TokenSlot> consecutive(KVCache& cache, int64_t start_pos, int64_t n) {
  std::vector<TokenSlot> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) s[size_t(i)] = {&cache, start_pos + i};
  return s;
}

// The time since the previous boundary, added to a part of StepTimes at each boundary; nothing
// at all without a StepTimes.
class PartClock {
 public:
  explicit PartClock(StepTimes* t) : t_(t) {
    if (t_) start_ = last_ = Clock::now();
  }
  // A boundary that ends no part (what ran before it counts in the whole step only).
  void mark() {
    if (t_) last_ = Clock::now();
  }
  // Adds the time since the previous boundary (or the start) to *part.
  void lap(double StepTimes::*part) {
    if (!t_) return;
    const auto now = Clock::now();
    t_->*part += seconds(now - last_);
    last_ = now;
  }
  void lap_layer(int64_t l) {
    if (!t_) return;
    const auto now = Clock::now();
    t_->layer[size_t(l)] += seconds(now - last_);
    last_ = now;
  }
  // Adds the time since the start to *whole.
  void total(double StepTimes::*whole) const {
    if (t_) t_->*whole += seconds(Clock::now() - start_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
  StepTimes* t_;
  Clock::time_point start_, last_;
};

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
  std::vector<float> sel;
  const float* in = x + rows[0] * dim;
  if (!contiguous) {
    sel.resize(size_t(n * dim));
    for (int64_t i = 0; i < n; ++i)
      std::copy(x + rows[size_t(i)] * dim, x + (rows[size_t(i)] + 1) * dim, &sel[size_t(i * dim)]);
    in = sel.data();
  }
  if (part_.size == 1) return kernels::linear(w, in, logits, n, pool);
  // This rank's vocabulary columns [n, V_r], gathered on rank 0 in rank order, then put in place.
  std::vector<float> mine(static_cast<size_t>(n * w.rows));
  kernels::linear(w, in, mine.data(), n, pool);
  std::vector<size_t> counts;
  for (int r = 0; r < part_.size; ++r)
    counts.push_back(size_t(n * Partition{r, part_.size, part_.comm}.vocab(c_).size()) * sizeof(float));
  std::vector<float> all(part_.rank == 0 ? size_t(n * c_.vocab_size) : 0);
  part_.comm->gather(mine.data(), counts, all.data(), 0);
  if (part_.rank != 0) return;
  const float* src = all.data();
  for (int r = 0; r < part_.size; ++r) {
    const Range v = Partition{r, part_.size, part_.comm}.vocab(c_);
    for (int64_t i = 0; i < n; ++i, src += v.size()) std::copy(src, src + v.size(), logits + i * c_.vocab_size + v.begin);
  }
}

void Transformer::embed(const Matrix& e, std::span<const int32_t> tokens, float* x) const {
  const int64_t dim = c_.hidden_size, n = int64_t(tokens.size());
  const Range v = part_.vocab(c_);
  for (int64_t t = 0; t < n; ++t) {
    const int32_t id = tokens[size_t(t)];
    if (v.contains(id))
      kernels::dequant_row(e, id - v.begin, x + t * dim);
    else
      std::fill(x + t * dim, x + (t + 1) * dim, 0.0f);  // another rank's row
  }
  part_.sum(x, size_t(n * dim));
}

void Transformer::forward_batch(std::span<const int32_t> tokens, std::span<const TokenSlot> slots,
                                std::span<const int64_t> logit_rows, float* logits, ThreadPool& pool,
                                ForwardTrace* trace, float* hidden, MLAForm form) const {
  PartClock clock(times_);
  check_inputs(tokens, slots);
  if (form == MLAForm::Auto) form = mla_form_;
  if (driver_) driver_->announce_forward(tokens, slots, logit_rows, form);
  const int64_t n = int64_t(tokens.size()), dim = c_.hidden_size;
  if (trace) {
    trace->layer_outputs.assign(size_t(c_.num_hidden_layers), {});
    trace->routing.assign(size_t(c_.num_hidden_layers), {});
  }
  if (times_) {
    times_->layer.resize(size_t(c_.num_hidden_layers));
    times_->attention.resize(size_t(c_.num_hidden_layers));
  }
  std::vector<float> x(static_cast<size_t>(n * dim));
  clock.mark();  // the checks and the announcement count in the step only
  embed(w_.embed, tokens, x.data());
  clock.lap(&StepTimes::embed);
  for (int64_t l = 0; l < c_.num_hidden_layers; ++l) {
    block_forward(c_, w_.layers[size_t(l)], rope_, l, x.data(), n, slots, pool,
                  trace ? &trace->routing[size_t(l)] : nullptr, form, part_,
                  times_ ? &times_->attention[size_t(l)] : nullptr);
    if (trace && trace->record_layer_outputs) trace->layer_outputs[size_t(l)].assign(x.begin(), x.end());
    clock.lap_layer(l);
  }
  // Final norm in place: x becomes h, the hidden state the head and the MTP module read.
  for (int64_t t = 0; t < n; ++t)
    kernels::rmsnorm(&x[size_t(t * dim)], w_.norm, float(c_.rms_norm_eps), &x[size_t(t * dim)]);
  if (hidden) std::copy(x.begin(), x.end(), hidden);
  if (!logit_rows.empty()) head(w_.head, x.data(), logit_rows, logits, pool);
  clock.lap(&StepTimes::head);
  if (driver_) driver_->step_done();
  if (times_) {
    times_->steps++;
    times_->rows += n;
  }
  clock.total(&StepTimes::step);
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
  if (driver_) driver_->announce_mtp(depth, next_tokens, h, dim, start_pos, cache, all_logits);
  PartClock clock(times_);
  const MTPWeights& m = w_.mtp[size_t(depth)];
  const float eps = float(c_.rms_norm_eps);
  std::vector<float> eh(static_cast<size_t>(n * 2 * dim)), x(static_cast<size_t>(n * dim));
  embed(m.embed, next_tokens, x.data());
  for (int64_t t = 0; t < n; ++t) {
    float* e = &eh[size_t(t * 2 * dim)];
    kernels::rmsnorm(&x[size_t(t * dim)], m.enorm, eps, e);  // first half: enorm(embed(t[i+1]))
    kernels::rmsnorm(h + t * dim, m.hnorm, eps, e + dim);    // second half: hnorm(h[i])
  }
  kernels::linear(m.eh_proj, eh.data(), x.data(), n, pool);
  block_forward(c_, m.block, rope_, c_.num_hidden_layers + depth, x.data(), n, slots, pool,
                trace ? &trace->mtp_routing : nullptr, mla_form_, part_);
  for (int64_t t = 0; t < n; ++t) kernels::rmsnorm(&x[size_t(t * dim)], m.head_norm, eps, &x[size_t(t * dim)]);
  if (mtp_hidden) std::copy(x.begin(), x.end(), mtp_hidden);
  head(m.head, x.data(), logit_rows_for(n, all_logits), logits, pool);
  if (driver_) driver_->step_done();
  if (times_) {
    times_->mtp_steps++;
    times_->mtp_rows += n;
  }
  clock.total(&StepTimes::mtp);
}

uint64_t LoadedModel::file_bytes() const { return gguf ? gguf->file_bytes() : checkpoint->file_bytes(); }

void LoadedModel::populate() const {
  for_each_weight(model->weights(), [](const Matrix& m) {
    populate_range({m.data_begin(), m.data_bytes()});
    populate_range({m.scale_begin(), m.scale_bytes()});
  });
}

std::optional<Residency> LoadedModel::residency() const {
  return gguf ? gguf->residency() : checkpoint->residency();
}

namespace {

// FNV-1a, for the handshake's fingerprints (not for security: it tells apart different files).
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 1099511628211ull;
  }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }
  std::string hex() const { return str_cat(std::hex, h); }
};

std::string file_fingerprint(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  Fnv h;
  h.add(bytes);
  return h.hex();
}

// The checkpoint's tensor index: names, dtypes, shapes and byte ranges (headers only).
std::string index_fingerprint(const Checkpoint& ck) {
  Fnv h;
  for (const auto& [name, loc] : ck.tensors()) {
    h.add(name);
    h.add(std::string(dtype_name(loc.entry->dtype)));
    h.add(loc.entry->shape.str());
    h.add(&loc.entry->begin, sizeof loc.entry->begin);
    h.add(&loc.entry->end, sizeof loc.entry->end);
  }
  return h.hex();
}

}  // namespace

LoadedModel load_model(const std::string& path, bool with_mtp, const LoadOptions& load, Collectives* comm) {
  LocalCollectives local;
  Collectives& cm = comm ? *comm : local;
  LoadedModel m;
  const bool gguf = GgufModel::is_gguf_path(path);
  const std::string config_path = (std::filesystem::path(path) / "config.json").string();
  if (!gguf) run_on_all(cm, [&] { m.config = ModelConfig::from_file(config_path); });
  if (cm.size() > 1) {  // the handshake: nothing below runs unless all ranks agree
    agree_on(cm, "dsv3 version", DSV3_VERSION);
    agree_on(cm, "kernel variant (pass the same --kernels to every rank)", kernels::active().name);
    if (!gguf) {
      agree_on(cm, "config.json (fingerprint)", file_fingerprint(config_path));
      check_layout(m.config, cm.size());
    }
  }
  LoadOptions opt = load;
  std::optional<Progress> progress;
  if (!opt.mmap && cm.rank() == 0) {  // reading gigabytes takes a while: show it
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
  const Partition part = Partition::of(comm);
  if (gguf) {
    run_on_all(cm, [&] {
      m.gguf = std::make_unique<GgufModel>(GgufModel::open(path, opt));
      m.config = gguf::config_from_gguf(*m.gguf);
    });
    if (progress) progress->finish();
    if (cm.size() > 1) {  // a GGUF file carries its config: compare the files by size
      agree_on(cm, "GGUF file size", std::to_string(m.gguf->file_bytes()));
      check_layout(m.config, cm.size());
    }
    run_on_all(cm, [&] {
      m.model = std::make_unique<Transformer>(
          m.config, shard_weights(load_weights(*m.gguf, m.config, with_mtp), m.config, part), part);
    });
    return m;
  }
  run_on_all(cm, [&] { m.checkpoint = std::make_unique<Checkpoint>(Checkpoint::open(path, true, opt)); });
  if (progress) progress->finish();
  if (cm.size() > 1) agree_on(cm, "checkpoint tensor index (fingerprint)", index_fingerprint(*m.checkpoint));
  run_on_all(cm, [&] {
    m.model = std::make_unique<Transformer>(
        m.config, shard_weights(load_weights(*m.checkpoint, m.config, with_mtp), m.config, part), part);
  });
  return m;
}

}  // namespace dsv3
