// Rank 0 drives, the other ranks follow (docs/distributed.md). Rank 0 runs the whole program
// (CLI, server, scheduler, tokenizer, sampling) on its Transformer, which announces every
// forward step to the followers as a step record before running it: which call, the rows'
// tokens, positions and caches, the logit rows (and for the MTP module its input hidden
// states), or exit. Followers run follow(), repeating each step on their share of the weights
// against mirrors of rank 0's KV caches, until rank 0 says exit.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "core/collectives.h"
#include "core/thread_pool.h"
#include "model/kv_cache.h"

namespace dsv3 {

class Transformer;
enum class MLAForm;

// The fixed part of a step record (broadcast first, then a payload whose size it gives).
struct StepHeader {
  static constexpr uint32_t kMagic = 0x64737633;  // "dsv3"
  // Copy: rows [0, start_pos) of row 0's cache into row 1's (the rows' tokens are unused).
  enum Kind : uint32_t { Exit = 0, Forward = 1, Mtp = 2, Copy = 3 };
  uint32_t magic = kMagic;
  uint32_t kind = Exit;
  uint64_t step = 0;        // counts records, to catch a follower out of step
  int64_t rows = 0;         // tokens in the step
  int64_t logit_rows = 0;   // Forward: rows whose logits rank 0 wants
  int64_t caches = 0;       // distinct caches the rows use
  int64_t released = 0;     // caches rank 0 has destroyed since the last record
  int64_t start_pos = 0;    // Mtp: position of row 0
  int32_t form = 0;         // Forward: MLAForm
  int32_t depth = 0;        // Mtp: module
  int32_t all_logits = 0;   // Mtp
  int32_t pad = 0;
};

// Rank 0's side: announces steps, and names the caches its Transformer makes.
class StepDriver {
 public:
  explicit StepDriver(Collectives& comm);
  // Sends exit to the followers (or, destroyed while a step was running, ends the job: the
  // followers are inside that step's collectives and cannot be told).
  ~StepDriver();

  // Gives `cache` an id the followers mirror, and has its destruction reported to them.
  void adopt(KVCache& cache);
  void announce_forward(std::span<const int32_t> tokens, std::span<const TokenSlot> slots,
                        std::span<const int64_t> logit_rows, MLAForm form);
  void announce_mtp(int64_t depth, std::span<const int32_t> next_tokens, const float* h, int64_t dim,
                    int64_t start_pos, const KVCache& cache, bool all_logits);
  void announce_copy(const KVCache& src, const KVCache& dst, int64_t n);
  // Marks the end of the announced step's collectives.
  void step_done() { in_step_ = false; }
  // Tells the followers to exit (idempotent).
  void finish();

 private:
  void send(StepHeader& h, std::vector<uint8_t>& payload, std::span<const TokenSlot> slots,
            std::span<const int32_t> tokens);

  Collectives& comm_;
  struct Released {  // shared with the caches' release callbacks, which may outlive the driver
    std::mutex mu;
    std::vector<uint64_t> ids;
  };
  std::shared_ptr<Released> released_ = std::make_shared<Released>();
  uint64_t next_id_ = 1, step_ = 0;
  bool in_step_ = false, finished_ = false;
};

// A follower's loop: receives step records from rank 0 and runs each step on `model` (this
// rank's share) until the exit record. Waiting for a record sleeps rather than spinning.
// Throws dsv3::Error on a malformed record.
void follow(const Transformer& model, Collectives& comm, ThreadPool& pool);

}  // namespace dsv3
