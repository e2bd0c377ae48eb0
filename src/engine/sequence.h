// One sequence (a conversation, a request) on a model: its own KV cache and position, the
// logits after its last token, and the hidden state the MTP module reads.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "model/transformer.h"

namespace dsv3 {

class Sequence {
 public:
  // The latent cache is F32 by default (what the accuracy targets are measured with); BF16
  // halves it (float32 arithmetic on read).
  Sequence(const Transformer& model, int64_t ctx_size, DType cache_dtype = kDefaultCacheDType);

  const Transformer& model() const { return *model_; }
  int64_t pos() const { return pos_; }
  int64_t ctx_size() const { return cache_.max_seq(); }
  int64_t room() const { return ctx_size() - pos_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // Logits after the last token fed, [vocab].
  const std::vector<float>& logits() const { return logits_; }
  // Hidden state after model.norm of the last token fed, [dim].
  const std::vector<float>& hidden() const { return hidden_; }
  KVCache& cache() { return cache_; }

  // Runs `tokens` at the current position (prefill or one decode step). Throws dsv3::Error
  // naming both lengths when they do not fit the context. With `all_logits`, logits_row(i)
  // holds the logits after each fed token (speculative verification); otherwise only the last.
  void feed(std::span<const int32_t> tokens, ThreadPool& pool, bool all_logits = false);
  // Logits after the i-th token of the last feed (all_logits feeds only).
  const float* logits_row(int64_t i) const { return &logits_rows_[size_t(i * vocab_)]; }
  // Makes row i of the last all_logits feed the current logits (after a truncate).
  void select_logits_row(int64_t i);
  // Forgets everything from position `pos` on (the cache rows are simply overwritten later).
  void truncate(int64_t pos);
  // Becomes the first n positions of `src` (n <= src.pos()), their cache rows copied, as if it
  // had fed them itself; the logits stay stale until the next feed. Another slot's prompt rows,
  // without prefilling them again.
  void copy_prefix(const Sequence& src, int64_t n);
  void clear() { truncate(0); }

  // Hidden state (after model.norm) of position i < pos(), [dim].
  const float* hidden_row(int64_t i) const { return &hidden_rows_[size_t(i * dim_)]; }
  // MTP rows 0..mtp_pos()-1 are in the MTP layer's cache (speculative decoding bookkeeping).
  int64_t mtp_pos() const { return mtp_pos_; }
  void set_mtp_pos(int64_t p) { mtp_pos_ = p; }

 private:
  friend void feed_rows(std::span<Sequence* const>, std::span<const std::span<const int32_t>>, bool, ThreadPool&,
                        ForwardTrace*);
  // Records a token the batched step ran for this sequence, with its hidden state and its
  // logits (null: none computed for it, the current logits stay).
  void accept_step(int32_t token, const float* logits, const float* hidden);

  const Transformer* model_;
  KVCache cache_;
  int64_t pos_ = 0, mtp_pos_ = 0, vocab_, dim_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_, hidden_;
  std::vector<float> logits_rows_;  // [rows of the last all_logits feed, vocab]
  std::vector<float> hidden_rows_;  // [ctx, dim]: grown as positions are fed
};

// One decode step for several independent sequences: seqs[i] is fed tokens[i] at its own
// position. Equivalent to seqs[i]->feed({tokens[i]}) for each i (same logits, bit for bit);
// the batched model step reads each weight once per step for all sequences. `trace` (optional)
// receives the step's routing (Transformer::forward_batch), e.g. to count the experts it read.
void feed_batch(std::span<Sequence* const> seqs, std::span<const int32_t> tokens, ThreadPool& pool,
                ForwardTrace* trace = nullptr);
// The same with several tokens per sequence and logits after every token (logits_row), as
// speculative verification needs: seqs[i] is fed tokens[i] from its own position. Attention
// takes the absorb form (as feed_step), so cache rows match continuous batching's bit for bit.
void feed_batch(std::span<Sequence* const> seqs, std::span<const std::vector<int32_t>> tokens, ThreadPool& pool);
// A continuous-batching step: seqs[i] is fed tokens[i] (a decode token, or a chunk of its
// prompt) from its own position, with logits after its last token only. Attention always takes
// the absorb form, whatever the mix of sequences, so a sequence's logits have the same bits
// whether it runs alone or next to others, and whatever its prompt's chunking.
void feed_step(std::span<Sequence* const> seqs, std::span<const std::span<const int32_t>> tokens, ThreadPool& pool);

}  // namespace dsv3
