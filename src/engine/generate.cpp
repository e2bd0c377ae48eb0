#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "engine/stop_matcher.h"
#include "tokenizer/stream_decoder.h"

namespace dsv3 {

int32_t argmax(const float* logits, int64_t n) {
  // The maximum first, in 16 independent running maxima (the compiler turns the inner loop
  // into vector max instructions; one running index would chain every compare through a
  // load), then the first index holding it: the lowest index among ties, as before.
  constexpr int kWays = 16;
  float m[kWays];
  for (float& v : m) v = logits[0];
  int64_t i = 0;
  for (; i + kWays <= n; i += kWays)
    for (int k = 0; k < kWays; ++k) m[k] = logits[i + k] > m[k] ? logits[i + k] : m[k];
  float best = m[0];
  for (int k = 1; k < kWays; ++k) best = m[k] > best ? m[k] : best;
  for (; i < n; ++i) best = logits[i] > best ? logits[i] : best;
  for (int64_t j = 0; j < n; ++j)
    if (logits[j] == best) return int32_t(j);
  return 0;  // only if the maximum is NaN-poisoned: NaNs never compare greater
}

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Takes each chosen token through the stop conditions and the text stream.
class Emitter {
 public:
  Emitter(const ModelConfig& c, const Tokenizer* tok, const GenerateOptions& opt, GenerateResult& res)
      : c_(c), opt_(opt), res_(res), stops_(opt.stop) {
    if (tok) decoder_.emplace(*tok);
    res_.finish_reason = "length";
  }
  // Records `t`; false when generation must end here (EOS, stop string, callback, limit).
  bool emit(int32_t t) {
    res_.tokens.push_back(t);
    if (opt_.on_token && !opt_.on_token(t)) return finish("stop");
    const bool eos = std::find(c_.eos_token_ids.begin(), c_.eos_token_ids.end(), t) != c_.eos_token_ids.end();
    if (eos && opt_.stop_at_eos) return finish("stop");
    if (decoder_) {
      text(stops_.push(decoder_->put(t)));
      if (stops_.stopped()) return finish("stop");
    }
    if (int64_t(res_.tokens.size()) >= opt_.max_new_tokens) return finish("length");
    if (opt_.cancel && opt_.cancel->load()) return finish("cancelled");
    return true;
  }
  bool finish(const char* reason) {
    res_.finish_reason = reason;
    return false;
  }
  void close() {
    if (decoder_ && !stops_.stopped()) text(stops_.push(decoder_->flush()) + stops_.flush());
  }

 private:
  void text(const std::string& s) {
    if (s.empty()) return;
    res_.text += s;
    if (opt_.on_text) opt_.on_text(s);
  }
  const ModelConfig& c_;
  const GenerateOptions& opt_;
  GenerateResult& res_;
  std::optional<StreamDecoder> decoder_;
  StopMatcher stops_;
};

// Plain decoding: one token per forward step.
void decode_plain(Sequence& seq, Sampler& sampler, Emitter& out, ThreadPool& pool) {
  for (;;) {
    const int32_t next = sampler.sample(seq.logits());
    if (!out.emit(next)) return;
    if (seq.room() < 1) return;  // context full: finishes as "length"
    const int32_t t[1] = {next};
    seq.feed(t, pool);
  }
}

// Speculative decoding: the pending token x plus k MTP drafts verified in one forward step,
// while the DraftGate finds drafting pays; plain steps otherwise.
void decode_speculative(Sequence& seq, Sampler& sampler, int k, const Drafter& drafter, bool timed_gate, Emitter& out,
                        SpecStats& stats, ThreadPool& pool) {
  const int64_t vocab = seq.model().config().vocab_size;
  int32_t x = sampler.sample(seq.logits());
  if (!out.emit(x)) return;
  std::vector<float> q;
  // Greedy text does not depend on which steps draft, so there the gate may time the steps.
  DraftGate gate(DraftGate::kDefaultMinAcceptance, /*timed=*/timed_gate && sampler.greedy());
  for (;;) {
    const int kk = int(std::min<int64_t>(k, seq.room() - 1));
    if (kk < 1 || !gate.draft()) {  // gate closed, or no room to verify drafts: a plain step
      if (seq.room() < 1) return;
      if (kk >= 1) stats.plain_steps++;
      const auto tp = Clock::now();
      const int32_t t[1] = {x};
      seq.feed(t, pool);
      x = sampler.sample(seq.logits());
      if (kk >= 1) gate.record_plain(since(tp));
      if (!out.emit(x)) return;
      continue;
    }
    const auto t0 = Clock::now();
    const int64_t base = seq.pos();
    const std::vector<int32_t> drafts =
        drafter ? drafter(seq, x, kk, q) : mtp_draft(seq, x, kk, sampler, sampler, q, pool);
    DSV3_ASSERT(int(drafts.size()) == kk && q.size() == size_t(kk) * size_t(vocab));
    stats.draft_seconds += since(t0);
    std::vector<int32_t> verify = {x};
    verify.insert(verify.end(), drafts.begin(), drafts.end());
    seq.feed(verify, pool, /*all_logits=*/true);  // row j predicts the token after verify[j]

    const VerifyResult v = accept_drafts(seq, base, drafts, q, sampler, stats);
    const double step = since(t0);
    stats.step_seconds += step;
    gate.record(kk, v.accepted, step);
    const int m = v.accepted;
    const int32_t next = v.next;
    for (int j = 0; j < m; ++j)
      if (!out.emit(drafts[size_t(j)])) return;
    if (!out.emit(next)) return;
    x = next;
  }
}

}  // namespace

GenerateResult generate(Sequence& seq, std::span<const int32_t> prompt, const Tokenizer* tok,
                        const GenerateOptions& opt, ThreadPool& pool) {
  const ModelConfig& c = seq.model().config();
  DSV3_CHECK(tok || (opt.stop.empty() && !opt.on_text), "generate: stop strings and text output need a tokenizer");
  DSV3_CHECK(opt.speculative_k >= 0 && opt.speculative_k <= 16, "speculative draft length must be in [0, 16], got ",
             opt.speculative_k);
  DSV3_CHECK(opt.speculative_k == 0 || opt.drafter || seq.model().mtp_depth() > 0,
             "speculative decoding needs the checkpoint's MTP module (model.layers.", c.num_hidden_layers,
             ".*), which this checkpoint does not have");
  GenerateResult res;
  res.prompt_tokens = int64_t(prompt.size());
  const auto t0 = Clock::now();
  if (!prompt.empty()) seq.feed(prompt, pool);
  DSV3_CHECK(seq.pos() > 0, "empty prompt: nothing to continue");
  res.prefill_seconds = since(t0);

  const auto t1 = Clock::now();
  Sampler sampler(opt.sampling);
  Emitter out(c, tok, opt, res);
  if (opt.max_new_tokens > 0) {
    if (opt.speculative_k > 0)
      decode_speculative(seq, sampler, opt.speculative_k, opt.drafter, opt.timed_draft_gate, out, res.spec, pool);
    else
      decode_plain(seq, sampler, out, pool);
  }
  out.close();
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
