#include "engine/scheduler.h"

#include <algorithm>
#include <optional>

#include "engine/sequence.h"
#include "engine/speculative.h"
#include "engine/stop_matcher.h"
#include "engine/token_mask.h"
#include "tokenizer/stream_decoder.h"

namespace dsv3 {

JobOutput Job::take(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return pending_.done || pending_.new_tokens > 0 || !pending_.text.empty(); });
  JobOutput out = std::move(pending_);
  pending_ = JobOutput{};
  pending_.done = out.done;  // done stays visible to later takes
  pending_.finish_reason = out.finish_reason;
  pending_.error = out.error;
  return out;
}

void Job::append(std::string_view text, int64_t n_tokens, LogprobEntry* logprob, TokenPiece* piece) {
  n_generated_ += n_tokens;
  {
    std::lock_guard lk(mu_);
    pending_.text += text;
    pending_.new_tokens += n_tokens;
    if (logprob) pending_.logprobs.push_back(std::move(*logprob));
    if (piece) pending_.pieces.push_back(std::move(*piece));
  }
  cv_.notify_all();
}

void Job::finish(std::string reason, std::string error) {
  {
    std::lock_guard lk(mu_);
    if (finished_) return;
    finished_ = true;
    pending_.done = true;
    pending_.finish_reason = std::move(reason);
    pending_.error = std::move(error);
  }
  cv_.notify_all();
}

// A KV-cache slot and the state machine of the job running in it:
// prefill (prompt fed chunk by chunk) -> decode (one token per step) -> released.
struct Scheduler::Slot {
  Slot(const Transformer& m, int64_t ctx, DType cache_dtype) : seq(m, ctx, cache_dtype) {}
  Sequence seq;
  std::shared_ptr<Job> job;  // null: free
  std::optional<Sampler> sampler;
  std::optional<StreamDecoder> decoder;
  std::optional<StopMatcher> stops;
  DraftGate gate;          // whether this job's decode steps draft (speculative_k > 0)
  std::optional<TokenConstraint> constraint;  // structured output
  int64_t prompt_fed = 0;  // prompt tokens fed so far
  int64_t generated = 0;
  int32_t pending = -1;    // sampled token still to be fed (decode phase)
  uint64_t admitted = 0;   // admission order: prefill goes first-come first-served

  bool prefilling() const { return job && prompt_fed < int64_t(job->request().prompt.size()); }
};

Scheduler::Scheduler(const Transformer& model, const Tokenizer& tok, const SchedulerOptions& opt)
    : model_(model), tok_(tok), opt_(opt), pool_(opt.threads) {
  DSV3_CHECK(opt.max_batch >= 1 && opt.max_queue >= 0 && opt.ctx_size >= 2 && opt.prefill_chunk >= 1,
             "scheduler: bad options (max_batch ", opt.max_batch, ", max_queue ", opt.max_queue, ", ctx_size ",
             opt.ctx_size, ", prefill_chunk ", opt.prefill_chunk, ")");
  DSV3_CHECK(opt.speculative_k >= 0 && opt.speculative_k <= 16, "scheduler: speculative draft length must be in [0, 16]");
  DSV3_CHECK(opt.speculative_k == 0 || model.mtp_depth() > 0,
             "speculative decoding needs the checkpoint's MTP module (model.layers.", model.config().num_hidden_layers,
             ".*), which this checkpoint does not have");
  for (int i = 0; i < opt.max_batch; ++i) slots_.push_back(std::make_unique<Slot>(model, opt.ctx_size, opt.cache_dtype));
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(std::chrono::milliseconds(0)); }

std::shared_ptr<Job> Scheduler::submit(GenRequest r) {
  DSV3_CHECK(!r.prompt.empty(), "empty prompt");
  DSV3_CHECK(r.max_tokens >= 1, "max_tokens must be at least 1, got ", r.max_tokens);
  DSV3_CHECK(int64_t(r.prompt.size()) + r.max_tokens <= opt_.ctx_size, "the prompt (", r.prompt.size(),
             " tokens) plus max_tokens (", r.max_tokens, ") exceeds the context of ", opt_.ctx_size, " tokens");
  auto job = std::make_shared<Job>(std::move(r));
  {
    std::lock_guard lk(mu_);
    if (!accepting_) throw ShuttingDown("the server is shutting down");
    const int free_slots = opt_.max_batch - n_running_.load();
    if (int(queue_.size()) >= opt_.max_queue + std::max(0, free_slots))
      throw QueueFull(str_cat("the request queue is full (", queue_.size(), " waiting, ", n_running_.load(),
                              " running); try again later"));
    queue_.push_back(job);
    n_queued_ = int(queue_.size());
  }
  cv_.notify_all();
  return job;
}

void Scheduler::shutdown(std::chrono::milliseconds grace) {
  {
    std::unique_lock lk(mu_);
    accepting_ = false;
    idle_cv_.wait_for(lk, grace, [&] { return queue_.empty() && n_running_.load() == 0; });
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Scheduler::admit() {
  std::unique_lock lk(mu_);
  auto busy = [&] { return std::any_of(slots_.begin(), slots_.end(), [](auto& s) { return s->job != nullptr; }); };
  if (!busy() && queue_.empty()) idle_cv_.notify_all();
  cv_.wait(lk, [&] { return stop_ || !queue_.empty() || busy(); });
  if (stop_) {  // cancel everything left
    for (auto& j : queue_) j->finish("cancelled");
    queue_.clear();
    n_queued_ = 0;
    lk.unlock();
    for (auto& s : slots_)
      if (s->job) release(*s, "cancelled");
    return false;
  }
  while (!queue_.empty()) {
    // The free slot whose cached tokens share the longest prefix with the prompt, if the
    // prompt keeps at least half of that slot's cache (a conversation's next turn keeps
    // nearly all of it; a shared BOS or system line must not evict a conversation);
    // otherwise the least recently used free slot. At least the prompt's last token is fed
    // again: its logits start the answer.
    const std::vector<int32_t>& prompt = queue_.front()->request().prompt;
    Slot *best = nullptr, *lru = nullptr;
    int64_t best_common = -1;
    auto common_prefix = [&](const Slot& s) {
      int64_t k = 0;
      if (!opt_.prefix_cache) return k;
      const auto& cached = s.seq.tokens();
      const int64_t limit = std::min<int64_t>(int64_t(cached.size()), int64_t(prompt.size()) - 1);
      while (k < limit && cached[size_t(k)] == prompt[size_t(k)]) ++k;
      return k;
    };
    for (auto& s : slots_) {
      if (s->job) continue;
      const int64_t common = common_prefix(*s);
      if (common > best_common) best = s.get(), best_common = common;
      if (lru == nullptr || s->admitted < lru->admitted) lru = s.get();
    }
    if (best == nullptr) break;
    // Samples of one prompt (GenRequest::group): wait while a sibling prefills the prompt, then
    // take the rows of the sibling that holds most of it (copied: bits as a prefill's).
    Slot* sibling = nullptr;
    int64_t sibling_common = -1;
    if (const uint64_t group = queue_.front()->request().group; group != 0 && opt_.prefix_cache) {
      bool prefilling = false;
      for (auto& s : slots_) {
        if (!s->job || s->job->request().group != group) continue;
        prefilling = prefilling || s->seq.pos() < int64_t(prompt.size()) - 1;
        if (const int64_t c = common_prefix(*s); c > sibling_common) sibling = s.get(), sibling_common = c;
      }
      if (prefilling) break;
    }
    if (2 * best_common < int64_t(best->seq.tokens().size())) {
      best = lru;
      best_common = common_prefix(*lru);
    }
    if (sibling && sibling_common > best_common) {
      best = lru;
      lru->seq.copy_prefix(sibling->seq, sibling_common);
      best_common = sibling_common;
    }
    Slot* s = best;
    s->job = std::move(queue_.front());
    queue_.pop_front();
    const GenRequest& r = s->job->request();
    s->seq.truncate(best_common);
    s->job->n_cached_ = best_common;
    s->sampler.emplace(r.sampling);
    s->decoder.emplace(tok_, r.skip_special);
    s->stops.emplace(r.stop);
    s->gate = DraftGate();
    s->constraint.reset();
    if (r.grammar) {
      const auto& eos = model_.config().eos_token_ids;
      s->constraint.emplace(vocab_trie(), r.grammar, std::vector<int32_t>(eos.begin(), eos.end()));
    }
    s->prompt_fed = best_common;
    s->generated = 0;
    s->pending = -1;
    s->admitted = ++admissions_;  // from 1: never-used slots (0) are the least recently used
    ++n_running_;
  }
  n_queued_ = int(queue_.size());
  return true;
}

void Scheduler::loop() {
  while (admit()) {
    try {
      step();
    } catch (const std::exception& e) {  // a model error fails the running jobs, not the server
      for (auto& s : slots_)
        if (s->job) release(*s, "error", e.what());
    }
  }
  std::lock_guard lk(mu_);
  idle_cv_.notify_all();
}

void Scheduler::step() {
  for (auto& s : slots_)
    if (s->job && s->job->cancelled()) release(*s, "cancelled");
  if (opt_.speculative_k == 0) return mixed_step(true);
  mixed_step(false);  // prompt chunks; the decoding sequences draft and verify below
  decode_step();
}

void Scheduler::decode_step() {
  std::vector<Slot*> dec;
  for (auto& s : slots_)
    if (s->job && s->pending >= 0) dec.push_back(s.get());
  if (dec.empty()) return;
  std::vector<Sequence*> seqs;
  for (Slot* s : dec) seqs.push_back(&s->seq);
  last_batch_ = int(dec.size());
  n_steps_++;
  const int64_t vocab = model_.config().vocab_size;
  std::vector<std::vector<int32_t>> verify(dec.size()), drafts(dec.size());
  std::vector<std::vector<float>> q(dec.size());
  std::vector<int64_t> base(dec.size());
  for (size_t i = 0; i < dec.size(); ++i) {
    Slot& s = *dec[i];
    const int64_t left = s.job->request().max_tokens - s.generated;  // tokens this job may still emit
    // Penalties and bias change the distribution with every accepted token: no drafting.
    const int64_t k_max = s.sampler->params().adjusts_logits() ? 0 : opt_.speculative_k;
    int k = int(std::max<int64_t>(0, std::min<int64_t>({k_max, s.seq.room() - 1, left})));
    if (k > 0 && !s.gate.draft()) k = 0;  // drafting does not pay for this job now: a plain step
    base[i] = s.seq.pos();
    if (k > 0) drafts[i] = mtp_draft(s.seq, s.pending, k, *s.sampler, *s.sampler, q[i], pool_);
    if (s.constraint) drafts[i].resize(size_t(allowed_prefix(*s.constraint, drafts[i])));
    verify[i] = {s.pending};
    verify[i].insert(verify[i].end(), drafts[i].begin(), drafts[i].end());
  }
  feed_batch(seqs, verify, pool_);
  for (size_t i = 0; i < dec.size(); ++i) {
    Slot& s = *dec[i];
    s.pending = -1;
    if (drafts[i].empty()) {  // no room to draft: a plain step
      s.seq.select_logits_row(0);
      on_logits(s);
      continue;
    }
    SpecStats st;
    const VerifyResult v =
        s.constraint ? accept_drafts_constrained(s.seq, base[i], drafts[i], *s.sampler, *s.constraint, st)
                     : accept_drafts(s.seq, base[i], drafts[i], std::span(q[i]).first(drafts[i].size() * size_t(vocab)),
                                     *s.sampler, st);
    spec_drafted_ += st.drafted;
    spec_accepted_ += st.accepted;
    s.gate.record(int(st.drafted), int(st.accepted));
    // Draft j was sampled from verify row j, the final token from the row after the last accepted.
    bool running = true;
    for (int j = 0; j < v.accepted && running; ++j) running = emit(s, drafts[i][size_t(j)], s.seq.logits_row(j));
    if (!running) continue;
    if (v.next < 0) {
      release(s, "error", "structured output: no token of the vocabulary continues the value here");
      continue;
    }
    if (emit(s, v.next, s.seq.logits_row(v.accepted))) s.pending = v.next;
  }
}

// Prompt chunks (first come, first served, up to prefill_chunk tokens in all) and, `with_decode`,
// one token of every decoding sequence, in one forward pass: the weights are read once for all.
void Scheduler::mixed_step(bool with_decode) {
  std::vector<Slot*> run, pre;
  for (auto& s : slots_)
    if (s->prefilling()) pre.push_back(s.get());
  std::sort(pre.begin(), pre.end(), [](Slot* a, Slot* b) { return a->admitted < b->admitted; });
  std::vector<Sequence*> seqs;
  std::vector<std::span<const int32_t>> toks;
  int64_t budget = opt_.prefill_chunk;
  for (Slot* s : pre) {
    if (budget <= 0) break;
    const auto& prompt = s->job->request().prompt;
    const int64_t n = std::min<int64_t>({opt_.prefill_chunk, budget, int64_t(prompt.size()) - s->prompt_fed});
    run.push_back(s);
    seqs.push_back(&s->seq);
    toks.push_back(std::span(prompt).subspan(size_t(s->prompt_fed), size_t(n)));
    budget -= n;
  }
  for (auto& s : slots_)
    if (with_decode && s->job && s->pending >= 0) {
      run.push_back(s.get());
      seqs.push_back(&s->seq);
      toks.push_back(std::span(&s->pending, 1));
    }
  if (run.empty()) return;
  int decoding = 0;
  for (Slot* s : run) decoding += s->pending >= 0;
  last_batch_ = decoding;
  if (decoding > 0) n_steps_++;
  feed_step(seqs, toks, pool_);
  for (size_t i = 0; i < run.size(); ++i) {
    Slot& s = *run[i];
    if (s.pending >= 0) {
      s.pending = -1;
      on_logits(s);
    } else {
      s.prompt_fed += int64_t(toks[i].size());
      if (!s.prefilling()) on_logits(s);  // the first generated token
    }
  }
}

void Scheduler::on_logits(Slot& s) {
  const int32_t t =
      s.constraint ? sample_constrained(*s.sampler, s.seq.logits(), *s.constraint) : s.sampler->sample(s.seq.logits());
  if (t < 0) return release(s, "error", "structured output: no token of the vocabulary continues the value here");
  if (emit(s, t, s.seq.logits().data())) s.pending = t;
}

std::shared_ptr<const VocabTrie> Scheduler::vocab_trie() {
  if (!trie_) trie_ = std::make_shared<const VocabTrie>(tok_, int32_t(model_.config().vocab_size));
  return trie_;
}

bool Scheduler::emit(Slot& s, int32_t t, const float* logits) {
  const GenRequest& r = s.job->request();
  s.generated++;
  s.sampler->accept(t);
  std::optional<LogprobEntry> lp;
  if (r.logprobs >= 0) {
    const TokenLogprob tl = token_logprob(std::span(logits, size_t(model_.config().vocab_size)), t, r.logprobs);
    lp.emplace();
    lp->token = tok_.token_bytes(t);
    lp->logprob = tl.logprob;
    for (const auto& [id, v] : tl.top) lp->top.push_back({std::string(tok_.token_bytes(id)), v});
  }
  LogprobEntry* lpp = lp ? &*lp : nullptr;
  const auto& eos = model_.config().eos_token_ids;
  const bool is_eos = std::find(eos.begin(), eos.end(), t) != eos.end();
  // Under a grammar, EOS comes only once the value is complete, and it ends the job even with
  // ignore_eos (nothing else may follow).
  if (is_eos && (r.stop_at_eos || s.constraint)) {
    s.job->append({}, 1, lpp);
    release(s, "stop");
    return false;
  }
  if (s.constraint) s.constraint->accept(t);
  std::string text = s.decoder->put(t);
  std::optional<TokenPiece> piece;
  if (r.token_pieces) piece = TokenPiece{t, text};
  s.job->append(s.stops->push(text), 1, lpp, piece ? &*piece : nullptr);
  // A complete value that nothing may follow: the EOS the next step would be forced to take
  // is not worth a forward pass.
  if (s.stops->stopped() || (s.constraint && s.constraint->finished())) {
    release(s, "stop");
    return false;
  }
  if (s.generated >= r.max_tokens || s.seq.room() < 1) {
    release(s, "length");
    return false;
  }
  return true;
}

void Scheduler::release(Slot& s, const char* reason, std::string error) {
  if (std::string_view(reason) != "error" && std::string_view(reason) != "cancelled" && !s.stops->stopped()) {
    std::string rest = s.decoder->flush();
    std::optional<TokenPiece> piece;
    if (s.job->request().token_pieces && !rest.empty()) piece = TokenPiece{-1, rest};
    s.job->append(s.stops->push(rest) + s.stops->flush(), 0, nullptr, piece ? &*piece : nullptr);
  }
  s.job->finish(reason, std::move(error));
  s.job.reset();
  s.pending = -1;
  --n_running_;
}

}  // namespace dsv3
