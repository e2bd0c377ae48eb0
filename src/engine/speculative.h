// Self-speculative decoding with the model's own Multi-Token-Prediction module (DeepSeek-V3
// report section 2.2 and 5.4.3; drafting as SGLang's deepseek_nextn.py / vLLM's deepseek_mtp.py):
// the MTP module drafts k tokens, the main model verifies them and the next token in one
// batched step, the accepted prefix is kept and the cache of rejected positions rolled back.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "engine/sampler.h"
#include "engine/sequence.h"

namespace dsv3 {

class TokenConstraint;  // engine/token_mask.h

struct SpecStats {
  int64_t steps = 0;        // verification steps
  int64_t drafted = 0;      // draft tokens proposed
  int64_t accepted = 0;     // draft tokens accepted
  int64_t plain_steps = 0;  // one-token steps: the DraftGate closed, or a timed gate's control step
  double step_seconds = 0;  // wall time of the verification steps: draft, verify, accept, roll back
  double draft_seconds = 0;  // the drafting part of step_seconds (MTP catch-up and draft steps)
  double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
  // Tokens produced per verification step (accepted drafts + the one the main model adds).
  double tokens_per_step() const { return steps ? double(accepted + steps) / double(steps) : 0.0; }
};

// Whether a decode step drafts (issue 20: speculation must never slow decoding down). Drafting
// pays only while enough drafts are accepted to cover a speculative step's extra cost (the MTP
// block and head, and a verification that reads more experts than one token's); on
// random-weight models acceptance is ~0. The gate keeps a running acceptance (an exponential
// average over the last few drafted steps, starting at kPrior) and closes when it drops below
// `min_acceptance`. While closed, steps are plain; after `backoff` plain steps one probe step
// drafts: accepted often enough, the gate opens again, else the backoff doubles (kMinBackoff ..
// kMaxBackoff). By default it depends on acceptance counts only, never on time, so a seeded run
// gives the same text every time.
//
// Timed (greedy decoding only: its text does not depend on which steps draft). What a drafted
// step costs against a plain one is not known in advance: on a small model per-op overhead
// makes it ~2.8x (models/dsv3-kjv), so 53% acceptance, above the count gate's break-even, ran
// 0.87-0.9x plain. So the caller also reports each step's wall time; the gate times plain steps
// (the first step, then a control step after every kControlEvery drafted ones) and drafted ones
// (not the first after opening, whose MTP catch-up covers the plain steps' rows), and closes
// when drafted steps emit fewer tokens per second than plain ones. If a drafted step costs at
// least what its best case pays (1 + k plain steps), no acceptance can make drafting pay: the
// gate stays closed for the rest of the sequence (probing would pay an MTP catch-up over every
// plain step since, for nothing). Otherwise the backoff doubles and a probe reopens it on
// acceptance alone.
class DraftGate {
 public:
  // Break-even for one draft per step: 1 + a tokens per step against a step that costs ~1.5x a
  // plain one (bench's spec_step_cost on `medium`), so a >= 0.5.
  static constexpr double kDefaultMinAcceptance = 0.5;
  static constexpr double kPrior = 0.75;   // a new sequence drafts at once; two failed steps close the gate
  static constexpr double kWeight = 0.25;  // weight of the newest step in the running acceptance
  static constexpr int kMinBackoff = 32, kMaxBackoff = 1024;

  static constexpr int kControlEvery = 16;  // timed: a plain step after this many drafted ones

  explicit DraftGate(double min_acceptance = kDefaultMinAcceptance, bool timed = false)
      : min_acceptance_(min_acceptance), timed_(timed) {}
  // Called once per decode step: true if this step drafts (then call record), false for a plain step.
  bool draft();
  // The outcome of a drafted step: `accepted` of `drafted` draft tokens were accepted, in
  // `seconds` of wall time (read by a timed gate only).
  void record(int drafted, int accepted, double seconds = 0);
  // Timed gate: a plain step took `seconds`.
  void record_plain(double seconds);
  bool open() const { return open_; }
  double acceptance() const { return acceptance_; }

 private:
  void close();
  // Timed: drafted steps emit at least as many tokens per second as plain ones (both measured).
  bool drafting_pays() const { return draft_tokens_ / draft_seconds_ >= 1.0 / plain_seconds_; }

  double min_acceptance_;
  bool timed_;
  double acceptance_ = kPrior;
  bool open_ = true;
  int backoff_ = kMinBackoff;
  int plain_left_ = 0;  // plain steps before the next probe (gate closed)
  // Timed: running seconds per plain step and per drafted step, and tokens per drafted step
  // (0: none measured yet); drafted steps since the last plain one; whether the next drafted
  // step's time is skipped (the first after opening).
  double plain_seconds_ = 0, draft_seconds_ = 0, draft_tokens_ = 0;
  int since_plain_ = 0;
  bool skip_time_ = true;
};

struct AcceptResult {
  bool accepted;
  int32_t token;  // the draft when accepted, otherwise the replacement
};

// The speculative sampling rule (Leviathan et al. 2023, Chen et al. 2023; gpt-fast's
// speculative_decode): accept draft d ~ q with probability min(1, p(d) / q(d)); on rejection
// draw from max(0, p - q), renormalised. The result is distributed exactly as p. With one-hot
// p and q (greedy) it accepts iff d is p's argmax and otherwise returns that argmax.
AcceptResult speculative_accept(std::span<const float> p, std::span<const float> q, int32_t d, Sampler& rng);

// Proposes k tokens after the pending token x of a sequence and fills q [k, vocab] with the
// distributions they were drawn from. The MTP module is the drafter; tests and future drafters
// (n-gram, a smaller model) plug in here.
using Drafter = std::function<std::vector<int32_t>(Sequence& seq, int32_t x, int k, std::vector<float>& q)>;

// After `seq` was fed [x, drafts...] (with all logits) from position `base`: applies the
// acceptance rule draft by draft (row j of the verification predicts the token after
// verify[j]), rolls the sequence back to base + 1 + accepted, and returns how many drafts were
// accepted and the token that follows them (the replacement of the first rejected draft, or the
// main model's next token when all were accepted). `q` holds the draft distributions.
struct VerifyResult {
  int accepted;
  int32_t next;
};
VerifyResult accept_drafts(Sequence& seq, int64_t base, std::span<const int32_t> drafts, std::span<const float> q,
                           Sampler& sampler, SpecStats& stats);

// Under a grammar (structured output): how many leading drafts the constraint allows in turn
// (the first one it rejects ends the run; an EOS draft too: verification adds it). `c` is the
// state after the pending token.
int allowed_prefix(const TokenConstraint& c, std::span<const int32_t> drafts);
// accept_drafts for a constrained sequence: row j's token is drawn by sample_constrained and a
// draft is kept while it equals that draw. The result is distributed exactly as plain
// constrained sampling (the drafts only decide how many rows are used; greedy: the same tokens
// as without speculation); for temperature > 0 it accepts less often than the ratio rule,
// which would need the mask of every row. `c` (a copy: its cache is shared) is the state after
// the pending token. next is -1 when the grammar allows no token at all.
VerifyResult accept_drafts_constrained(Sequence& seq, int64_t base, std::span<const int32_t> drafts, Sampler& sampler,
                                       TokenConstraint c, SpecStats& stats);

// Drafts up to k tokens after the pending token `x` (sampled, not yet fed) of `seq`: first
// brings the MTP cache up to date (rows mtp_pos .. pos-1, row pos-1 paired with x), then applies
// the MTP module k times, recursively for k > 1 (each further step reads the previous step's
// MTP output as its hidden state, as vLLM does). Returns the drafts and, in `q`, the draft
// distributions [k, vocab] under the sampler's filters.
std::vector<int32_t> mtp_draft(Sequence& seq, int32_t x, int k, const Sampler& sampler, Sampler& rng,
                               std::vector<float>& q, ThreadPool& pool);

}  // namespace dsv3
