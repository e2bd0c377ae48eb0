// Token generation on top of the model: prefill the prompt through the KV cache, then one
// token per step (as DeepSeek's generate.py does), with sampling, stop conditions and
// streaming text.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "engine/sampler.h"
#include "engine/sequence.h"
#include "engine/speculative.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

// Index of the largest logit (lowest index on ties).
int32_t argmax(const float* logits, int64_t n);

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool stop_at_eos = true;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (needs a tokenizer); not included in the output
  // Called with each new token as soon as it is chosen; return false to stop.
  std::function<bool(int32_t)> on_token;
  // Called with text as it becomes final (whole UTF-8 characters, never part of a stop string).
  std::function<void(std::string_view)> on_text;
  const std::atomic<bool>* cancel = nullptr;  // set to stop at the next token (Ctrl-C)
  // Self-speculative decoding with the checkpoint's MTP module: k draft tokens per step
  // (0 = off). Greedy output is identical to plain decoding; sampled output has the same
  // distribution (speculative sampling rule).
  int speculative_k = 0;
  Drafter drafter;  // empty: the MTP module
  // Greedy decoding lets the DraftGate time the steps (speculative.h: drafting stops where it
  // emits fewer tokens per second than plain steps). false: acceptance counts only, so which
  // steps draft is the same in every run (tests that count steps).
  bool timed_draft_gate = true;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // new tokens (the stop token / EOS included when it ended the text)
  std::string text;             // decoded new text, stop string removed
  std::string finish_reason;    // "stop" (EOS or stop string), "length", "cancelled"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  SpecStats spec;  // filled when speculative_k > 0
};

// Feeds `prompt` (may be empty if the sequence already holds tokens and logits) and generates.
// `tok` may be null when there are no stop strings and no on_text.
GenerateResult generate(Sequence& seq, std::span<const int32_t> prompt, const Tokenizer* tok,
                        const GenerateOptions& opt, ThreadPool& pool);

// Greedy continuation of `prompt` (temperature 0) in a fresh cache; returns the new ids.
std::vector<int32_t> generate_greedy(const Transformer& model, std::span<const int32_t> prompt, KVCache& cache,
                                     const GenerateOptions& opt, ThreadPool& pool);

}  // namespace dsv3
