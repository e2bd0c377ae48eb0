// The DeepSeek-V3 decoder (model.py classes Block and Transformer): embedding, blocks of
// norm -> MLA -> residual -> norm -> MLP or MoE -> residual, final norm, lm_head.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/gguf.h"
#include "model/kv_cache.h"
#include "model/lockstep.h"
#include "model/mla.h"
#include "model/moe.h"
#include "model/partition.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv3 {

// Optional per-forward outputs used by tests and `dsv3 logits` for bisecting mismatches.
struct ForwardTrace {
  bool record_layer_outputs = true;                     // false: routing only (cheap enough to time)
  std::vector<std::vector<float>> layer_outputs;        // [layer][n * dim] residual after each block
  std::vector<std::vector<Routing>> routing;            // [layer][token] (empty for dense layers)
  std::vector<Routing> mtp_routing;                     // [token] of the MTP block (mtp_forward)
};

// Where the forward steps' wall time goes (`dsv3 bench`): seconds between the parts' boundaries,
// read on the thread that calls forward (the pool joins at every op, so a part's time holds all
// of its work; on rank 0 of several, its waits in the collectives too), summed over the steps
// run while installed with Transformer::set_step_times. Timing reads a clock at each boundary
// and never touches the data: the logits are the same bits with or without it.
struct StepTimes {
  std::vector<double> layer;   // [num_hidden_layers]: one block each (attention, then MLP or MoE)
  std::vector<double> attention;  // [num_hidden_layers]: layer[l]'s attention half (norm, MLA, sum)
  double embed = 0;            // embedding rows
  double head = 0;             // final norm and lm_head
  double step = 0;             // whole forward_batch calls (the parts and the checks between them)
  int64_t steps = 0, rows = 0;  // forward_batch calls and their token rows
  double mtp = 0;              // whole mtp_forward calls (embedding, eh_proj, block, head)
  int64_t mtp_steps = 0, mtp_rows = 0;
};

class Transformer {
 public:
  // `w` holds this rank's share of the weights when `part` splits the model over several
  // ranks (model/partition.h, shard_weights); rank 0 then drives the others (model/lockstep.h).
  Transformer(const ModelConfig& c, const ModelWeights& w, Partition part = {});
  ~Transformer();

  const ModelConfig& config() const { return c_; }
  const ModelWeights& weights() const { return w_; }
  const Partition& partition() const { return part_; }

  // A cache sized for `max_seq` positions of the main layers and the MTP modules (if loaded).
  // On rank 0 of several, the followers mirror it.
  KVCache make_cache(int64_t max_seq, DType dtype = kDefaultCacheDType) const;
  // dst's rows [0, n) become src's (KVCache::copy_rows); on rank 0 of several, the followers
  // copy between their mirrors too.
  void copy_cache_rows(const KVCache& src, KVCache& dst, int64_t n) const;

  // Runs tokens at positions [start_pos, start_pos + n), appending to `cache`. Writes logits
  // [n, vocab] (all_logits) or [1, vocab] for the last token only. Positions before start_pos
  // must already be in the cache. Throws dsv3::Error on bad ids or a full cache.
  // If `hidden` is non-null it receives the final hidden states after model.norm, [n, dim]
  // (what the MTP module reads).
  void forward(std::span<const int32_t> tokens, int64_t start_pos, KVCache& cache, float* logits, bool all_logits,
               ThreadPool& pool, ForwardTrace* trace = nullptr, float* hidden = nullptr) const;

  // Multi-Token Prediction module `depth` (0 for DeepSeek-V3's single module), as SGLang's
  // deepseek_nextn.py and vLLM's deepseek_mtp.py run it (without vLLM's position-0 zeroing):
  // row i at position start_pos + i reads h[i], the main model's hidden state after model.norm,
  // and the token t[i+1] that follows it:
  //   x = eh_proj(concat(enorm(embed(t[i+1])), hnorm(h[i])))   (embedding half first)
  //   x = decoder block (own MLA cache layer, attends to MTP rows 0..i)
  //   logits = shared_head.head(shared_head.norm(x))           (predicts t[i+2])
  // next_tokens[i] = t[i+1]; h is [n, dim]. Writes logits [n, vocab] or [1, vocab] (last row),
  // and, when `mtp_hidden` is non-null, the normed output rows [n, dim] (input to depth + 1).
  void mtp_forward(int64_t depth, std::span<const int32_t> next_tokens, const float* h, int64_t start_pos,
                   KVCache& cache, float* logits, bool all_logits, ThreadPool& pool,
                   ForwardTrace* trace = nullptr, float* mtp_hidden = nullptr) const;
  int64_t mtp_depth() const { return int64_t(w_.mtp.size()); }
  // Which MLA form attention uses (default: chosen per call by operation count).
  void set_mla_form(MLAForm f) { mla_form_ = f; }
  // Accumulates the time of every later forward step into `t` (null: stop; the default). `t`
  // must outlive its use, and only one forward may run at a time while it is installed.
  void set_step_times(StepTimes* t) { times_ = t; }
  // Rank 0 of several: tells the followers to stop following (also done on destruction).
  void release_followers();

  // The general step: row i is token tokens[i] at slots[i] (any mix of sequences and
  // positions; a sequence's rows in position order). Every weight is read once for all rows.
  // Logits are computed for the rows listed in `logit_rows` only, [logit_rows.size(), vocab];
  // `hidden` (optional) receives all rows' final hidden states [n, dim]. On several ranks,
  // rank 0 announces the step to the others first, and only rank 0 receives logits (the
  // followers pass null).
  // `form` other than Auto overrides set_mla_form for this call.
  void forward_batch(std::span<const int32_t> tokens, std::span<const TokenSlot> slots,
                     std::span<const int64_t> logit_rows, float* logits, ThreadPool& pool,
                     ForwardTrace* trace = nullptr, float* hidden = nullptr, MLAForm form = MLAForm::Auto) const;

 private:
  void check_inputs(std::span<const int32_t> tokens, std::span<const TokenSlot> slots) const;
  void head(const Matrix& w, const float* x, std::span<const int64_t> rows, float* logits, ThreadPool& pool) const;
  // x[t] = embedding row of tokens[t] ([n, dim]), from this rank's vocabulary rows, summed.
  void embed(const Matrix& e, std::span<const int32_t> tokens, float* x) const;

  ModelConfig c_;
  ModelWeights w_;
  Partition part_;
  std::unique_ptr<StepDriver> driver_;  // rank 0 of several only
  Rope rope_;
  MLAForm mla_form_ = MLAForm::Auto;
  StepTimes* times_ = nullptr;
};

// One decoder block (model.py Block): x = x + attn(attn_norm(x)); x = x + ffn(ffn_norm(x)).
// x is [n, dim], row i at slots[i]; `cache_layer` is the cache layer the block's attention
// reads and appends to. Routing of MoE blocks goes to `routing` if non-null.
// With a rank's share of the weights, the attention and FFN outputs are partial sums, each
// summed over ranks (part.sum) before its residual add: two reductions per block.
// `attention_seconds`, if non-null, is added the wall time of the attention half (StepTimes).
void block_forward(const ModelConfig& c, const BlockWeights& b, const Rope& rope, int64_t cache_layer, float* x,
                   int64_t n, std::span<const TokenSlot> slots, ThreadPool& pool,
                   std::vector<Routing>* routing = nullptr, MLAForm form = MLAForm::Auto,
                   const Partition& part = Partition{}, double* attention_seconds = nullptr);

// A loaded model: the mapped weight files (a checkpoint folder or a GGUF model, one of the two)
// and the transformer over their weights.
struct LoadedModel {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<GgufModel> gguf;
  std::unique_ptr<Transformer> model;

  // Total bytes of the weight files.
  uint64_t file_bytes() const;
  // Maps every page of this rank's weights now (io populate_range on each weight view: all of
  // them in one process, its share on one of several ranks), so that later steps take no page
  // faults.
  void populate() const;
  // The weight files' bytes this process holds in RAM now, and how many of them are mapped
  // with huge pages (io residency; nullopt where it cannot be read). Under mpirun, what this
  // rank has touched: its share, the replicated tensors, and what it read to copy its slices.
  std::optional<Residency> residency() const;
};
// Loads config and weights from a checkpoint folder (config.json + safetensors) or a GGUF file
// (`path` ending in .gguf; the first or any part of a split set); MTP weights are bound when
// present and `with_mtp`. `load` chooses mapping (default) or reading into huge-page memory
// (with a progress bar), and locking. With `comm` of several ranks (every rank calls this): the
// ranks first agree that they run the same dsv3 version and kernels on the same config and
// tensor layout, and that the model can be split over them (JobError otherwise, before any
// weight is touched); each then keeps its share of the weights (shard_weights). An error on
// any rank is a JobError on all.
LoadedModel load_model(const std::string& path, bool with_mtp = true, const LoadOptions& load = {},
                       Collectives* comm = nullptr);

}  // namespace dsv3
