#include "engine/sequence.h"

#include "core/error.h"

namespace dsv3 {

Sequence::Sequence(const Transformer& model, int64_t ctx_size)
    : model_(&model), cache_(model.make_cache(ctx_size)),
      logits_(static_cast<size_t>(model.config().vocab_size)),
      hidden_(static_cast<size_t>(model.config().hidden_size)) {}

void Sequence::feed(std::span<const int32_t> tokens, ThreadPool& pool) {
  const int64_t n = int64_t(tokens.size());
  DSV3_CHECK(n > 0, "empty prompt: nothing to run");
  DSV3_CHECK(pos_ + n <= ctx_size(), "prompt too long: ", pos_, " tokens in context + ", n,
             " new = ", pos_ + n, " exceed the context size of ", ctx_size(), " tokens (--ctx-size)");
  const int64_t dim = model_->config().hidden_size;
  std::vector<float> hidden(static_cast<size_t>(n * dim));
  model_->forward(tokens, pos_, cache_, logits_.data(), /*all_logits=*/false, pool, nullptr, hidden.data());
  std::copy(hidden.end() - dim, hidden.end(), hidden_.begin());
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  pos_ += n;
}

void Sequence::truncate(int64_t pos) {
  DSV3_ASSERT(pos >= 0 && pos <= pos_);
  pos_ = pos;
  tokens_.resize(size_t(pos));
}

}  // namespace dsv3
