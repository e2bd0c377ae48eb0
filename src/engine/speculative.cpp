#include "engine/speculative.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "engine/token_mask.h"

namespace dsv3 {

AcceptResult speculative_accept(std::span<const float> p, std::span<const float> q, int32_t d, Sampler& rng) {
  const float pd = p[size_t(d)], qd = q[size_t(d)];
  DSV3_ASSERT(qd > 0);  // d was drawn from q
  if (pd >= qd || rng.uniform() < pd / qd) return {true, d};
  std::vector<float> residual(p.size());
  float mass = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    residual[i] = std::max(0.0f, p[i] - q[i]);
    mass += residual[i];
  }
  // p != q here (p(d) < q(d)), so the residual has positive mass; guard float underflow anyway.
  if (mass <= 0) return {false, int32_t(std::max_element(p.begin(), p.end()) - p.begin())};
  return {false, rng.draw(residual)};
}

bool DraftGate::draft() {
  if (open_) {
    if (timed_ && (plain_seconds_ == 0 || since_plain_ >= kControlEvery)) return false;  // a control step
    return true;
  }
  if (plain_left_ > 0) {
    --plain_left_;
    return false;
  }
  return true;  // a probe
}

void DraftGate::close() {
  open_ = false;
  plain_left_ = backoff_;
}

namespace {
double running(double avg, double v) { return avg == 0 ? v : avg + DraftGate::kWeight * (v - avg); }
}  // namespace

void DraftGate::record_plain(double seconds) {
  if (!timed_ || seconds <= 0) return;
  plain_seconds_ = running(plain_seconds_, seconds);
  if (open_) {
    // Drafting paid over the steps since the last control step: back to the shortest backoff.
    if (since_plain_ > 0 && draft_seconds_ > 0 && drafting_pays()) backoff_ = kMinBackoff;
    since_plain_ = 0;
  }
}

void DraftGate::record(int drafted, int accepted, double seconds) {
  if (drafted <= 0) return;
  const double rate = double(accepted) / double(drafted);
  if (!open_) {  // the probe's outcome
    if (rate >= min_acceptance_) {
      open_ = true;
      acceptance_ = rate;
      since_plain_ = 0;
      skip_time_ = true;
      draft_seconds_ = draft_tokens_ = 0;
      if (!timed_) backoff_ = kMinBackoff;
    } else {
      backoff_ = std::min(2 * backoff_, kMaxBackoff);
      plain_left_ = backoff_;
    }
    return;
  }
  acceptance_ += kWeight * (rate - acceptance_);
  if (acceptance_ < min_acceptance_) {
    close();
    return;
  }
  if (!timed_ || seconds <= 0) return;
  ++since_plain_;
  if (skip_time_) {
    skip_time_ = false;
    return;
  }
  draft_seconds_ = running(draft_seconds_, seconds);
  draft_tokens_ = running(draft_tokens_, double(accepted + 1));
  if (plain_seconds_ == 0 || drafting_pays()) return;
  // Drafting emits fewer tokens per second than plain steps.
  close();
  if (draft_seconds_ >= double(drafted + 1) * plain_seconds_)
    plain_left_ = std::numeric_limits<int>::max();  // not even full acceptance would pay: plain from now on
  else
    backoff_ = std::min(2 * backoff_, kMaxBackoff);
}

namespace {
// Both acceptance rules end alike: count the step, keep x and the m accepted drafts, roll back
// the rejected positions, and leave the logits row that produced `next` selected.
VerifyResult finish_verification(Sequence& seq, int64_t base, int k, int m, int32_t next, SpecStats& stats) {
  stats.steps++;
  stats.drafted += k;
  stats.accepted += m;
  seq.truncate(base + 1 + m);
  seq.select_logits_row(m);
  return {m, next};
}
}  // namespace

VerifyResult accept_drafts(Sequence& seq, int64_t base, std::span<const int32_t> drafts, std::span<const float> q,
                           Sampler& sampler, SpecStats& stats) {
  const int64_t vocab = seq.model().config().vocab_size;
  const int k = int(drafts.size());
  int m = 0;
  int32_t next = -1;
  for (; m < k; ++m) {
    const std::vector<float> p = sampler.probabilities(std::span(seq.logits_row(m), size_t(vocab)));
    const AcceptResult a = speculative_accept(p, q.subspan(size_t(m) * size_t(vocab), size_t(vocab)), drafts[size_t(m)],
                                              sampler);
    if (!a.accepted) {
      next = a.token;
      break;
    }
  }
  if (m == k) next = sampler.sample(std::span(seq.logits_row(k), size_t(vocab)));
  return finish_verification(seq, base, k, m, next, stats);
}

int allowed_prefix(const TokenConstraint& c, std::span<const int32_t> drafts) {
  TokenConstraint state = c;
  int n = 0;
  for (int32_t d : drafts) {
    if (state.is_eos(d) || !state.allows(d)) break;
    state.accept(d);
    ++n;
  }
  return n;
}

VerifyResult accept_drafts_constrained(Sequence& seq, int64_t base, std::span<const int32_t> drafts, Sampler& sampler,
                                       TokenConstraint c, SpecStats& stats) {
  const int64_t vocab = seq.model().config().vocab_size;
  const int k = int(drafts.size());
  int m = 0;
  int32_t next = -1;
  for (; m <= k; ++m) {
    next = sample_constrained(sampler, std::span(seq.logits_row(m), size_t(vocab)), c);
    if (m == k || next != drafts[size_t(m)]) break;
    c.accept(next);
  }
  return finish_verification(seq, base, k, m, next, stats);
}

std::vector<int32_t> mtp_draft(Sequence& seq, int32_t x, int k, const Sampler& sampler, Sampler& rng,
                               std::vector<float>& q, ThreadPool& pool) {
  const Transformer& model = seq.model();
  const int64_t vocab = model.config().vocab_size, dim = model.config().hidden_size;
  const int64_t pos = seq.pos();
  DSV3_ASSERT(pos >= 1 && k >= 1 && pos + k <= seq.ctx_size());
  // Catch-up rows: row i pairs h[i] with t[i+1] (the fed token), the last row with x.
  const int64_t first = seq.mtp_pos();
  std::vector<int32_t> next;
  std::vector<float> h;
  for (int64_t i = first; i < pos; ++i) {
    next.push_back(i + 1 < pos ? seq.tokens()[size_t(i + 1)] : x);
    h.insert(h.end(), seq.hidden_row(i), seq.hidden_row(i) + dim);
  }
  std::vector<float> logits(static_cast<size_t>(vocab)), mtp_h(next.size() * size_t(dim));
  model.mtp_forward(0, next, h.data(), first, seq.cache(), logits.data(), false, pool, nullptr, mtp_h.data());
  seq.set_mtp_pos(pos);

  std::vector<int32_t> drafts;
  q.clear();
  std::vector<float> hidden(mtp_h.end() - dim, mtp_h.end());
  for (int j = 0; j < k; ++j) {
    if (j > 0) {  // recursive step at position pos + j - 1 (overwritten by the next catch-up)
      const int32_t t[1] = {drafts.back()};
      std::vector<float> out(static_cast<size_t>(dim));
      model.mtp_forward(0, t, hidden.data(), pos + j - 1, seq.cache(), logits.data(), false, pool, nullptr,
                        out.data());
      hidden = out;
    }
    std::vector<float> qj = sampler.probabilities(logits);
    const int32_t d = sampler.greedy() ? int32_t(std::max_element(qj.begin(), qj.end()) - qj.begin()) : rng.draw(qj);
    drafts.push_back(d);
    q.insert(q.end(), qj.begin(), qj.end());
  }
  return drafts;
}

}  // namespace dsv3
