#include "engine/sequence.h"

#include "core/error.h"

namespace dsv3 {

Sequence::Sequence(const Transformer& model, int64_t ctx_size, DType cache_dtype)
    : model_(&model), cache_(model.make_cache(ctx_size, cache_dtype)), vocab_(model.config().vocab_size),
      dim_(model.config().hidden_size), logits_(static_cast<size_t>(vocab_)), hidden_(static_cast<size_t>(dim_)) {}

void Sequence::feed(std::span<const int32_t> tokens, ThreadPool& pool, bool all_logits) {
  const int64_t n = int64_t(tokens.size());
  DSV3_CHECK(n > 0, "empty prompt: nothing to run");
  DSV3_CHECK(pos_ + n <= ctx_size(), "prompt too long: ", pos_, " tokens in context + ", n,
             " new = ", pos_ + n, " exceed the context size of ", ctx_size(), " tokens (--ctx-size)");
  if (hidden_rows_.size() < size_t((pos_ + n) * dim_)) hidden_rows_.resize(size_t((pos_ + n) * dim_));
  float* hidden = &hidden_rows_[size_t(pos_ * dim_)];
  if (all_logits) {
    logits_rows_.resize(size_t(n * vocab_));
    model_->forward(tokens, pos_, cache_, logits_rows_.data(), true, pool, nullptr, hidden);
    std::copy(logits_rows_.end() - vocab_, logits_rows_.end(), logits_.begin());
  } else {
    model_->forward(tokens, pos_, cache_, logits_.data(), false, pool, nullptr, hidden);
  }
  std::copy(hidden + (n - 1) * dim_, hidden + n * dim_, hidden_.begin());
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  pos_ += n;
}

void Sequence::select_logits_row(int64_t i) {
  std::copy(logits_row(i), logits_row(i) + vocab_, logits_.begin());
}

void Sequence::truncate(int64_t pos) {
  DSV3_ASSERT(pos >= 0 && pos <= pos_);
  pos_ = pos;
  tokens_.resize(size_t(pos));
  if (pos > 0) std::copy(hidden_row(pos - 1), hidden_row(pos - 1) + dim_, hidden_.begin());
  // MTP row i pairs h[i] with token i+1: rows from pos-1 on depend on what comes next.
  mtp_pos_ = std::min(mtp_pos_, std::max<int64_t>(pos - 1, 0));
}

void Sequence::copy_prefix(const Sequence& src, int64_t n) {
  DSV3_ASSERT(&src != this && n >= 0 && n <= src.pos_ && n <= ctx_size() && src.model_ == model_);
  model_->copy_cache_rows(src.cache_, cache_, n);
  tokens_.assign(src.tokens_.begin(), src.tokens_.begin() + n);
  pos_ = n;
  if (hidden_rows_.size() < size_t(n * dim_)) hidden_rows_.resize(size_t(n * dim_));
  std::copy(src.hidden_rows_.begin(), src.hidden_rows_.begin() + n * dim_, hidden_rows_.begin());
  if (n > 0) std::copy(hidden_row(n - 1), hidden_row(n - 1) + dim_, hidden_.begin());
  mtp_pos_ = std::min(src.mtp_pos_, std::max<int64_t>(n - 1, 0));
}

void Sequence::accept_step(int32_t token, const float* logits, const float* hidden) {
  if (hidden_rows_.size() < size_t((pos_ + 1) * dim_)) hidden_rows_.resize(size_t((pos_ + 1) * dim_));
  std::copy(hidden, hidden + dim_, &hidden_rows_[size_t(pos_ * dim_)]);
  std::copy(hidden, hidden + dim_, hidden_.begin());
  if (logits) std::copy(logits, logits + vocab_, logits_.begin());
  tokens_.push_back(token);
  ++pos_;
}

// The batched step behind feed_batch and feed_step: seqs[i] is fed tokens[i] from its own
// position in one forward pass (absorb-form attention, so a sequence's bits never depend on
// its neighbours), with logits after every token (`all_logits`, kept as logits_row) or after
// each sequence's last token only.
void feed_rows(std::span<Sequence* const> seqs, std::span<const std::span<const int32_t>> tokens, bool all_logits,
               ThreadPool& pool, ForwardTrace* trace) {
  DSV3_ASSERT(seqs.size() == tokens.size());
  if (seqs.empty()) return;
  const Transformer& model = seqs[0]->model();
  const int64_t vocab = model.config().vocab_size, dim = model.config().hidden_size;
  std::vector<int32_t> flat;
  std::vector<TokenSlot> slots;
  std::vector<int64_t> rows;  // rows whose logits are computed
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    DSV3_CHECK(&s.model() == &model, "batched step: sequences of different models");
    DSV3_CHECK(!tokens[i].empty() && s.room() >= int64_t(tokens[i].size()), "context full: sequence ", i, " holds ",
               s.pos(), " of ", s.ctx_size(), " tokens and needs ", tokens[i].size(), " more");
    for (size_t j = 0; j < i; ++j) DSV3_CHECK(seqs[j] != &s, "batched step: a sequence appears twice");
    for (size_t t = 0; t < tokens[i].size(); ++t) {
      if (all_logits || t + 1 == tokens[i].size()) rows.push_back(int64_t(flat.size()));
      flat.push_back(tokens[i][t]);
      slots.push_back({&s.cache(), s.pos() + int64_t(t)});
    }
  }
  std::vector<float> logits(rows.size() * size_t(vocab)), hidden(flat.size() * size_t(dim));
  model.forward_batch(flat, slots, rows, logits.data(), pool, trace, hidden.data(), MLAForm::Absorb);
  size_t r = 0, lr = 0;  // first row, first logits row of sequence i
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    const size_t n = tokens[i].size();
    if (all_logits) s.logits_rows_.assign(&logits[lr * size_t(vocab)], &logits[(lr + n) * size_t(vocab)]);
    for (size_t t = 0; t < n; ++t) {
      const bool has_logits = all_logits || t + 1 == n;
      s.accept_step(tokens[i][t], has_logits ? &logits[(lr + (all_logits ? t : 0)) * size_t(vocab)] : nullptr,
                    &hidden[(r + t) * size_t(dim)]);
    }
    r += n;
    lr += all_logits ? n : 1;
  }
}

void feed_batch(std::span<Sequence* const> seqs, std::span<const int32_t> tokens, ThreadPool& pool,
                ForwardTrace* trace) {
  DSV3_ASSERT(seqs.size() == tokens.size());
  std::vector<std::span<const int32_t>> one;
  for (const int32_t& t : tokens) one.push_back(std::span(&t, 1));
  feed_rows(seqs, one, false, pool, trace);
}

void feed_batch(std::span<Sequence* const> seqs, std::span<const std::vector<int32_t>> tokens, ThreadPool& pool) {
  std::vector<std::span<const int32_t>> spans(tokens.begin(), tokens.end());
  feed_rows(seqs, spans, true, pool, nullptr);
}

void feed_step(std::span<Sequence* const> seqs, std::span<const std::span<const int32_t>> tokens, ThreadPool& pool) {
  feed_rows(seqs, tokens, false, pool, nullptr);
}

}  // namespace dsv3
