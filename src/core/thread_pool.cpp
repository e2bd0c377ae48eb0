#include "core/thread_pool.h"

#include <algorithm>

#include "core/error.h"

namespace dsv3 {

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  workers_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lk(mu_);
    stop_.store(true);
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::default_threads() {
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
}  // namespace

void ThreadPool::run_shares(const std::function<void(int, int)>& fn, std::exception_ptr& err) {
  const int shares = shares_.load();
  for (int i; (i = next_share_.fetch_add(1)) < shares;) {
    try {
      fn(i, shares);
    } catch (...) {
      if (!err) err = std::current_exception();
    }
  }
}

void ThreadPool::worker(int) {
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly for the next job, then sleep.
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 0; gen == seen && i < kSpinIterations && !stop_.load(std::memory_order_relaxed); ++i) {
      cpu_relax();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock lk(mu_);
      cv_start_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
      if (stop_.load()) return;
      gen = generation_.load();
    }
    if (stop_.load()) return;
    seen = gen;
    // Join the job unless it is already closed (the caller ran every share) or replaced: a
    // worker woken late must not touch a job whose fn may be gone. The caller waits for
    // active_ to drain after closing, and a worker checks closed_ after counting itself in,
    // so one of the two always sees the other (sequentially consistent atomics).
    active_.fetch_add(1);
    if (closed_.load() != gen && generation_.load() == gen) {
      const std::function<void(int, int)>* job = job_.load();
      std::exception_ptr err;
      run_shares(*job, err);
      if (err) {
        std::lock_guard lk(mu_);
        if (!error_) error_ = err;
      }
    }
    if (active_.fetch_sub(1) == 1) {
      std::lock_guard lk(mu_);  // pairs with the caller's wait: no lost wake-up
      cv_done_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn, int shares) {
  if (shares <= 0) shares = n_threads_;
  if (n_threads_ == 1) {
    for (int i = 0; i < shares; ++i) fn(i, shares);
    return;
  }
  uint64_t gen;
  {
    std::lock_guard lk(mu_);
    error_ = nullptr;
    job_.store(&fn);
    shares_.store(shares);
    next_share_.store(0);
    gen = generation_.fetch_add(1) + 1;
  }
  cv_start_.notify_all();
  std::exception_ptr err;
  run_shares(fn, err);
  closed_.store(gen);  // every share is claimed: late workers stay out
  for (int i = 0; active_.load() != 0 && i < kSpinIterations; ++i) cpu_relax();
  if (active_.load() != 0) {
    std::unique_lock lk(mu_);
    cv_done_.wait(lk, [&] { return active_.load() == 0; });
  }
  std::lock_guard lk(mu_);
  if (!err) err = error_;
  if (err) std::rethrow_exception(err);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  const int nth = int(std::min<int64_t>(n_threads_, std::max<int64_t>(1, n / std::max<int64_t>(1, grain))));
  if (nth == 1) {
    fn(0, n);
    return;
  }
  run([&](int ith, int) {
    if (ith >= nth) return;
    const int64_t begin = n * ith / nth, end = n * (ith + 1) / nth;
    if (begin < end) fn(begin, end);
  });
}

int64_t ThreadPool::guided_start(int64_t units, int ith, int nth, int threads) {
  if (ith <= 0) return 0;
  if (ith >= nth) return units;
  threads = std::max(1, threads);
  const int rounds = (nth + threads - 1) / threads;
  auto weight = [&](int j) { return int64_t(1) << std::clamp(rounds - 1 - j / threads, 0, 20); };
  int64_t before = 0, total = 0;
  for (int j = 0; j < nth; ++j) (j < ith ? before : total) += weight(j);
  total += before;
  if (units >= nth) return ith + (units - nth) * before / total;
  return units * before / total;
}

void ThreadPool::parallel_chunks(int64_t n, int64_t align, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  align = std::max<int64_t>(1, align);
  const int64_t units = (n + align - 1) / align;
  const int shares = int(std::min<int64_t>(units, int64_t(n_threads_) * kOversplit));
  if (n_threads_ == 1 || shares == 1) {
    fn(0, n);
    return;
  }
  run(
      [&](int ith, int nth) {
        const int64_t begin = std::min(n, guided_start(units, ith, nth, n_threads_) * align),
                      end = std::min(n, guided_start(units, ith + 1, nth, n_threads_) * align);
        if (begin < end) fn(begin, end);
      },
      shares);
}

}  // namespace dsv3
