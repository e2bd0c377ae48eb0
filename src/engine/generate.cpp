#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "tokenizer/stream_decoder.h"

namespace dsv3 {

int32_t argmax(const float* logits, int64_t n) {
  int32_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = int32_t(i);
  return best;
}

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Holds back text that could still turn into a stop string, and finds stop strings.
class StopMatcher {
 public:
  explicit StopMatcher(const std::vector<std::string>& stops) : stops_(stops) {}
  // Appends text; returns the part that is now final. Sets stopped() when a stop string appears.
  std::string push(std::string_view s) {
    pending_ += s;
    size_t hit = std::string::npos;
    for (const auto& st : stops_)
      if (!st.empty()) hit = std::min(hit, pending_.find(st));
    if (hit != std::string::npos) {
      stopped_ = true;
      std::string out = pending_.substr(0, hit);
      pending_.clear();
      return out;
    }
    size_t hold = 0;  // longest suffix of pending_ that is a proper prefix of a stop string
    for (const auto& st : stops_)
      for (size_t k = std::min(st.size() - 1, pending_.size()); k > hold; --k)
        if (pending_.compare(pending_.size() - k, k, st, 0, k) == 0) {
          hold = k;
          break;
        }
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
  }
  std::string flush() { return std::exchange(pending_, {}); }
  bool stopped() const { return stopped_; }

 private:
  const std::vector<std::string>& stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace

GenerateResult generate(Sequence& seq, std::span<const int32_t> prompt, const Tokenizer* tok,
                        const GenerateOptions& opt, ThreadPool& pool) {
  const ModelConfig& c = seq.model().config();
  DSV3_CHECK(tok || (opt.stop.empty() && !opt.on_text), "generate: stop strings and text output need a tokenizer");
  GenerateResult res;
  res.prompt_tokens = int64_t(prompt.size());
  const auto t0 = Clock::now();
  if (!prompt.empty()) seq.feed(prompt, pool);
  DSV3_CHECK(seq.pos() > 0, "empty prompt: nothing to continue");
  res.prefill_seconds = since(t0);

  Sampler sampler(opt.sampling);
  std::optional<StreamDecoder> decoder;
  if (tok) decoder.emplace(*tok);
  StopMatcher stops(opt.stop);
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    res.text += s;
    if (opt.on_text) opt.on_text(s);
  };

  const auto t1 = Clock::now();
  res.finish_reason = "length";
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    if (opt.cancel && opt.cancel->load()) {
      res.finish_reason = "cancelled";
      break;
    }
    const int32_t next = sampler.sample(seq.logits());
    res.tokens.push_back(next);
    const bool eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end();
    if (opt.on_token && !opt.on_token(next)) {
      res.finish_reason = "stop";
      break;
    }
    if (eos && opt.stop_at_eos) {
      res.finish_reason = "stop";
      break;
    }
    if (decoder) {
      emit(stops.push(decoder->put(next)));
      if (stops.stopped()) {
        res.finish_reason = "stop";
        break;
      }
    }
    if (i + 1 == opt.max_new_tokens) break;
    if (seq.room() < 1) break;  // context full: finish as "length"
    const int32_t t[1] = {next};
    seq.feed(t, pool);
  }
  if (decoder && !stops.stopped()) emit(stops.push(decoder->flush()) + stops.flush());
  res.decode_seconds = since(t1);
  return res;
}

std::vector<int32_t> generate_greedy(const Transformer& model, std::span<const int32_t> prompt, KVCache& cache,
                                     const GenerateOptions& opt, ThreadPool& pool) {
  const ModelConfig& c = model.config();
  DSV3_CHECK(!prompt.empty(), "generate: empty prompt");
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  std::vector<int32_t> out;
  model.forward(prompt, 0, cache, logits.data(), /*all_logits=*/false, pool);
  int64_t pos = int64_t(prompt.size());
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    const int32_t next = argmax(logits.data(), c.vocab_size);
    out.push_back(next);
    if (opt.on_token && !opt.on_token(next)) break;
    if (opt.stop_at_eos && std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end())
      break;
    if (i + 1 == opt.max_new_tokens) break;
    const int32_t tok[1] = {next};
    model.forward(tok, pos++, cache, logits.data(), false, pool);
  }
  return out;
}

}  // namespace dsv3
