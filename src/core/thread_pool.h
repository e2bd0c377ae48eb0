// A persistent pool of worker threads. Work is handed out as (ith, nth) shares, as ggml does:
// fn(ith, nth) runs once for every ith < nth, and run() returns when all have finished. No
// threads are created per call. Shares are claimed, not assigned: the caller and whichever
// workers are awake take the next unclaimed share until none is left, so a worker the OS has
// not scheduled yet (cores shared with other processes) never holds up a region: the others
// run its share. Results must therefore depend on ith, never on which thread runs it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv3 {

class ThreadPool {
 public:
  // n_threads >= 1 participants in total (n_threads - 1 workers plus the calling thread).
  explicit ThreadPool(int n_threads = 1);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(ith, nth) for every ith < nth (nth = `shares`, or size() when 0), on whichever
  // threads claim the shares; blocks until all return. More shares than threads balance uneven
  // progress (a thread that finishes early claims more). Not reentrant: fn must not call run()
  // on the same pool. The first exception thrown by fn is rethrown.
  void run(const std::function<void(int ith, int nth)>& fn, int shares = 0);

  // Splits [0, n) into contiguous chunks, one per participant, and runs fn(begin, end) on each
  // non-empty chunk. The split depends only on n and size(), so results are reproducible. With
  // `grain`, each participant gets at least that many units (fewer participants; below 2 x
  // grain the caller runs it all inline): for per-token work that is only worth a parallel
  // region for long prompts.
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn, int64_t grain = 1);
  // Like parallel_for, but in about kOversplit chunks per participant, claimed dynamically and
  // shrinking towards the end (guided_start), with every boundary a multiple of `align`: for the
  // decode's short regions, where one thread's late start or slower memory would otherwise
  // leave the others waiting.
  void parallel_chunks(int64_t n, int64_t align, const std::function<void(int64_t begin, int64_t end)>& fn);
  static constexpr int kOversplit = 4;
  // The grain for per-token work that costs a few microseconds per token (norms, rope, routing,
  // the MoE gather and sum): a decode step's 1-8 tokens run inline instead of paying a region.
  static constexpr int64_t kTokenGrain = 32;
  // Where share ith of nth starts when `units` units of work are cut into shares that `threads`
  // threads claim in order (guided scheduling): each round of `threads` shares is half the size
  // of the round before, so the first shares are big and the last ones, which decide how long
  // the threads that finish first wait at the end, are small. Every share gets at least one
  // unit when units >= nth. Depends only on the arguments; guided_start(units, nth, ...) = units.
  static int64_t guided_start(int64_t units, int ith, int nth, int threads);

  // Threads to use by default: hardware concurrency (at least 1).
  static int default_threads();

 private:
  void worker(int ith);

  // Decode runs hundreds of short parallel regions per token; waking sleeping threads through
  // the kernel for each costs as much as the work. So workers and the caller spin on atomics
  // for a while (kSpinIterations) before falling back to the condition variables.
  static constexpr int kSpinIterations = 1 << 14;

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  std::atomic<const std::function<void(int, int)>*> job_{nullptr};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> next_share_{0};         // the next unclaimed share of the current job
  std::atomic<int> shares_{0};             // the current job's number of shares
  std::atomic<int> active_{0};             // workers inside the current job
  std::atomic<uint64_t> closed_{0};        // generation whose shares are all claimed
  void run_shares(const std::function<void(int, int)>& fn, std::exception_ptr& err);
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // guarded by mu_
};

}  // namespace dsv3
