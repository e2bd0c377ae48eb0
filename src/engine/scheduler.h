// Continuous batching (as vLLM's and llama.cpp's servers do): requests join and leave the
// running batch at every step, each in its own KV-cache slot; prompt prefill is fed in chunks
// between decode steps so running streams are not stalled for long. One scheduler thread does
// all model work; other threads only submit jobs and read their output.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/json_schema.h"
#include "engine/sampler.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

struct GenRequest {
  std::vector<int32_t> prompt;  // not empty; prompt.size() + max_tokens <= the scheduler's ctx_size
  int64_t max_tokens = 16;      // >= 1
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings, cut from the text
  bool stop_at_eos = true;
  bool skip_special = true;  // leave special tokens out of the text (as vLLM's skip_special_tokens)
  int logprobs = -1;         // >= 0: report each generated token's logprob and this many alternatives
  // Also hand out each token's id with the text the stream decoder released for it, before
  // stop-string matching (JobOutput::pieces): tool-call parsing keys on marker token ids.
  bool token_pieces = false;
  // Samples of one prompt (the API's n > 1) share a nonzero group: while one of them prefills
  // the prompt the others wait, then copy its cache rows instead of prefilling them again.
  uint64_t group = 0;
  // Structured output: the generated text is a value of this grammar (engine/token_mask.h),
  // and the job ends with "stop" as soon as the value is complete; null: free text.
  std::shared_ptr<const JsonGrammar> grammar;
};

// A generated token and the text the stream decoder released with it (whole UTF-8 characters;
// may be empty, or finish an earlier token's character). id -1: the decoder's flush at the end.
struct TokenPiece {
  int32_t id;
  std::string text;
};

// One generated token's log-probability (engine/sampler.h: token_logprob), with the token and
// its alternatives as their raw bytes (byte-level BPE pieces may be parts of a UTF-8 character).
struct LogprobEntry {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};

// Output a job produced since the consumer last looked.
struct JobOutput {
  std::string text;        // new final text (whole UTF-8 characters, never part of a stop string)
  int64_t new_tokens = 0;  // tokens generated since the last take
  std::vector<LogprobEntry> logprobs;  // one per new token, when the request asked for them
  std::vector<TokenPiece> pieces;      // GenRequest::token_pieces: one per new token but EOS, in order
  bool done = false;
  std::string finish_reason;  // when done: "stop", "length", "cancelled" or "error"
  std::string error;          // when finish_reason == "error"
};

// One request's shared state. The scheduler thread appends output; one consumer thread takes it.
// All methods are thread-safe.
class Job {
 public:
  explicit Job(GenRequest r) : req_(std::move(r)) {}
  const GenRequest& request() const { return req_; }

  // Waits up to `timeout` for new output or the end; returns (and forgets) what is new.
  JobOutput take(std::chrono::milliseconds timeout);
  // Asks the scheduler to drop this job (client gone, user stop); its slot is freed at the next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  int64_t completion_tokens() const { return n_generated_.load(); }
  // Prompt tokens whose KV-cache rows were reused from the slot's previous request (prefix
  // caching); known once the job is admitted.
  int64_t cached_tokens() const { return n_cached_.load(); }

 private:
  friend class Scheduler;
  void append(std::string_view text, int64_t n_tokens, LogprobEntry* logprob = nullptr, TokenPiece* piece = nullptr);
  void finish(std::string reason, std::string error = {});

  const GenRequest req_;
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> n_generated_{0};
  std::atomic<int64_t> n_cached_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  JobOutput pending_;  // guarded by mu_
  bool finished_ = false;
};

// Thrown by Scheduler::submit when the wait queue is full (HTTP 429) or the scheduler is
// shutting down (HTTP 503).
class QueueFull : public Error {
 public:
  using Error::Error;
};
class ShuttingDown : public Error {
 public:
  using Error::Error;
};

struct SchedulerOptions {
  int max_batch = 4;            // running sequences; each owns a KV cache of ctx_size rows
  int64_t ctx_size = 4096;      // positions per sequence
  int max_queue = 64;           // waiting jobs beyond the running batch
  int64_t prefill_chunk = 256;  // prompt tokens fed per step (bounds the stall of running streams)
  int threads = 1;              // ThreadPool size for the model
  DType cache_dtype = kDefaultCacheDType;  // each slot's KV cache storage
  // Self-speculative decoding with the model's MTP module: draft tokens per sequence and step
  // (0 = off). Each running sequence verifies its own drafts inside the batched step.
  int speculative_k = 0;
  // Prefix caching (as llama.cpp's slots): a new request goes to the free slot whose cache
  // holds the longest prefix of its prompt, and only the rest of the prompt is prefilled. A
  // chat's next turn resends the whole conversation; its earlier turns are not recomputed.
  bool prefix_cache = true;
};

class VocabTrie;

class Scheduler {
 public:
  // Allocates max_batch KV caches and starts the scheduler thread. `model` and `tok` must
  // outlive the scheduler.
  Scheduler(const Transformer& model, const Tokenizer& tok, const SchedulerOptions& opt);
  ~Scheduler();  // shutdown(0)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const SchedulerOptions& options() const { return opt_; }

  // Queues a job. Throws QueueFull / ShuttingDown, or dsv3::Error when the request does not fit
  // the context (callers validate first to answer 400).
  std::shared_ptr<Job> submit(GenRequest r);

  // Stops accepting jobs, lets running and queued ones finish for up to `grace`, cancels the
  // rest and joins the thread. Idempotent.
  void shutdown(std::chrono::milliseconds grace);

  int queued() const { return n_queued_.load(); }
  int running() const { return n_running_.load(); }
  int last_batch_size() const { return last_batch_.load(); }  // sequences in the last decode step
  int64_t steps() const { return n_steps_.load(); }
  // Speculative decoding totals over all requests (scheduler thread writes, others read).
  int64_t spec_drafted() const { return spec_drafted_.load(); }
  int64_t spec_accepted() const { return spec_accepted_.load(); }

 private:
  struct Slot;
  void loop();
  bool admit();  // moves queued jobs into free slots; false when stopping with nothing to do
  void step();
  void on_logits(Slot& s);  // samples the next token of a slot whose logits are fresh
  // Records a generated token, sampled from `logits` (for its logprob); false when the job
  // ended with it.
  bool emit(Slot& s, int32_t t, const float* logits);
  void mixed_step(bool with_decode);  // prompt chunks (+ decode tokens) in one forward pass
  void decode_step();              // one speculative step: draft, then verify in one batch
  void release(Slot& s, const char* reason, std::string error = {});
  std::shared_ptr<const VocabTrie> vocab_trie();  // built on the first structured request

  const Transformer& model_;
  const Tokenizer& tok_;
  const SchedulerOptions opt_;
  ThreadPool pool_;                           // used by the scheduler thread only
  std::vector<std::unique_ptr<Slot>> slots_;  // scheduler thread only
  uint64_t admissions_ = 0;                   // scheduler thread only
  std::shared_ptr<const VocabTrie> trie_;     // scheduler thread only

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::shared_ptr<Job>> queue_;  // guarded by mu_
  bool accepting_ = true, stop_ = false;    // guarded by mu_
  std::atomic<int> n_queued_{0}, n_running_{0}, last_batch_{0};
  std::atomic<int64_t> n_steps_{0}, spec_drafted_{0}, spec_accepted_{0};
  std::thread thread_;
};

}  // namespace dsv3
