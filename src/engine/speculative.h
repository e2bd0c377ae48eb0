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

struct SpecStats {
  int64_t steps = 0;     // verification steps
  int64_t drafted = 0;   // draft tokens proposed
  int64_t accepted = 0;  // draft tokens accepted
  double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
  // Tokens produced per verification step (accepted drafts + the one the main model adds).
  double tokens_per_step() const { return steps ? double(accepted + steps) / double(steps) : 0.0; }
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

// Drafts up to k tokens after the pending token `x` (sampled, not yet fed) of `seq`: first
// brings the MTP cache up to date (rows mtp_pos .. pos-1, row pos-1 paired with x), then applies
// the MTP module k times, recursively for k > 1 (each further step reads the previous step's
// MTP output as its hidden state, as vLLM does). Returns the drafts and, in `q`, the draft
// distributions [k, vocab] under the sampler's filters.
std::vector<int32_t> mtp_draft(Sequence& seq, int32_t x, int k, const Sampler& sampler, Sampler& rng,
                               std::vector<float>& q, ThreadPool& pool);

}  // namespace dsv3
