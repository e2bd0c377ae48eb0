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

void Sequence::accept_step(int32_t token, const float* logits, const float* hidden) {
  if (hidden_rows_.size() < size_t((pos_ + 1) * dim_)) hidden_rows_.resize(size_t((pos_ + 1) * dim_));
  std::copy(hidden, hidden + dim_, &hidden_rows_[size_t(pos_ * dim_)]);
  std::copy(hidden, hidden + dim_, hidden_.begin());
  if (logits) std::copy(logits, logits + vocab_, logits_.begin());
  tokens_.push_back(token);
  ++pos_;
}

void feed_batch(std::span<Sequence* const> seqs, std::span<const int32_t> tokens, ThreadPool& pool) {
  DSV3_ASSERT(seqs.size() == tokens.size());
  if (seqs.empty()) return;
  const Transformer& model = seqs[0]->model();
  const int64_t n = int64_t(seqs.size()), vocab = model.config().vocab_size, dim = model.config().hidden_size;
  std::vector<TokenSlot> slots;
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i) {
    Sequence& s = *seqs[size_t(i)];
    DSV3_CHECK(&s.model() == &model, "feed_batch: sequences of different models");
    DSV3_CHECK(s.room() >= 1, "context full: sequence ", i, " holds ", s.pos(), " of ", s.ctx_size(), " tokens");
    for (int64_t j = 0; j < i; ++j) DSV3_CHECK(seqs[size_t(j)] != &s, "feed_batch: a sequence appears twice");
    slots.push_back({&s.cache(), s.pos()});
    rows.push_back(i);
  }
  std::vector<float> logits(static_cast<size_t>(n * vocab)), hidden(static_cast<size_t>(n * dim));
  model.forward_batch(tokens, slots, rows, logits.data(), pool, nullptr, hidden.data());
  for (int64_t i = 0; i < n; ++i) seqs[size_t(i)]->accept_step(tokens[size_t(i)], &logits[size_t(i * vocab)], &hidden[size_t(i * dim)]);
}

void feed_batch(std::span<Sequence* const> seqs, std::span<const std::vector<int32_t>> tokens, ThreadPool& pool) {
  DSV3_ASSERT(seqs.size() == tokens.size());
  if (seqs.empty()) return;
  const Transformer& model = seqs[0]->model();
  const int64_t vocab = model.config().vocab_size, dim = model.config().hidden_size;
  std::vector<int32_t> flat;
  std::vector<TokenSlot> slots;
  std::vector<int64_t> rows;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    DSV3_CHECK(&s.model() == &model, "feed_batch: sequences of different models");
    DSV3_CHECK(!tokens[i].empty() && s.room() >= int64_t(tokens[i].size()), "context full: sequence ", i, " holds ",
               s.pos(), " of ", s.ctx_size(), " tokens and needs ", tokens[i].size(), " more");
    for (size_t j = 0; j < i; ++j) DSV3_CHECK(seqs[j] != &s, "feed_batch: a sequence appears twice");
    for (size_t t = 0; t < tokens[i].size(); ++t) {
      rows.push_back(int64_t(flat.size()));
      flat.push_back(tokens[i][t]);
      slots.push_back({&s.cache(), s.pos() + int64_t(t)});
    }
  }
  std::vector<float> logits(rows.size() * size_t(vocab)), hidden(flat.size() * size_t(dim));
  model.forward_batch(flat, slots, rows, logits.data(), pool, nullptr, hidden.data(), MLAForm::Absorb);
  size_t r = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    const int64_t n = int64_t(tokens[i].size());
    s.logits_rows_.assign(logits.begin() + long(r * size_t(vocab)), logits.begin() + long((r + size_t(n)) * size_t(vocab)));
    for (int64_t t = 0; t < n; ++t)
      s.accept_step(tokens[i][size_t(t)], &logits[(r + size_t(t)) * size_t(vocab)], &hidden[(r + size_t(t)) * size_t(dim)]);
    r += size_t(n);
  }
}

void feed_step(std::span<Sequence* const> seqs, std::span<const std::span<const int32_t>> tokens, ThreadPool& pool) {
  DSV3_ASSERT(seqs.size() == tokens.size());
  if (seqs.empty()) return;
  const Transformer& model = seqs[0]->model();
  const int64_t vocab = model.config().vocab_size, dim = model.config().hidden_size;
  std::vector<int32_t> flat;
  std::vector<TokenSlot> slots;
  std::vector<int64_t> rows;  // the last row of each sequence
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    DSV3_CHECK(&s.model() == &model, "feed_step: sequences of different models");
    DSV3_CHECK(!tokens[i].empty() && s.room() >= int64_t(tokens[i].size()), "context full: sequence ", i, " holds ",
               s.pos(), " of ", s.ctx_size(), " tokens and needs ", tokens[i].size(), " more");
    for (size_t j = 0; j < i; ++j) DSV3_CHECK(seqs[j] != &s, "feed_step: a sequence appears twice");
    for (size_t t = 0; t < tokens[i].size(); ++t) {
      flat.push_back(tokens[i][t]);
      slots.push_back({&s.cache(), s.pos() + int64_t(t)});
    }
    rows.push_back(int64_t(flat.size()) - 1);
  }
  std::vector<float> logits(rows.size() * size_t(vocab)), hidden(flat.size() * size_t(dim));
  model.forward_batch(flat, slots, rows, logits.data(), pool, nullptr, hidden.data(), MLAForm::Absorb);
  size_t r = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    const size_t n = tokens[i].size();
    for (size_t t = 0; t < n; ++t)
      s.accept_step(tokens[i][t], t + 1 == n ? &logits[i * size_t(vocab)] : nullptr, &hidden[(r + t) * size_t(dim)]);
    r += n;
  }
}

}  // namespace dsv3
