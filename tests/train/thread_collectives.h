// Collectives between threads of one process: N "ranks" as N threads, for testing code written
// against core/collectives.h (data-parallel training) without mpirun, in builds without MPI too.
// Every operation is a rendezvous of all ranks: each deposits its buffer, all read what they
// need, and none leaves before all have read.
#pragma once
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/collectives.h"

namespace dsv3::test {

class ThreadCollectives final : public Collectives {
 public:
  struct Hub {
    explicit Hub(int n) : n(n), bufs(size_t(n)) {}
    int n;
    std::mutex m;
    std::condition_variable cv;
    std::vector<const void*> bufs;
    int arrived = 0;
    int64_t generation = 0;
  };

  ThreadCollectives(std::shared_ptr<Hub> hub, int rank) : hub_(std::move(hub)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return hub_->n; }
  std::string describe() const override { return "thread rank " + std::to_string(rank_); }

  void broadcast(void* data, size_t bytes, int root) override {
    meet(data, [&](const std::vector<const void*>& b) {
      if (rank_ != root) std::memcpy(data, b[size_t(root)], bytes);
    });
  }
  void broadcast_idle(void* data, size_t bytes, int root) override { broadcast(data, bytes, root); }
  void sum(float* data, size_t n) override {
    std::vector<float> s(n);
    meet(data, [&](const std::vector<const void*>& b) {
      std::memcpy(s.data(), b[0], n * sizeof(float));
      for (size_t r = 1; r < b.size(); ++r)
        for (size_t i = 0; i < n; ++i) s[i] += static_cast<const float*>(b[r])[i];
    });
    std::memcpy(data, s.data(), n * sizeof(float));  // after every rank has read `data`
  }
  void gather(const void* send, std::span<const size_t> counts, void* recv, int root) override {
    meet(send, [&](const std::vector<const void*>& b) {
      if (rank_ == root) concat(b, counts, recv);
    });
  }
  void all_gather(const void* send, std::span<const size_t> counts, void* recv) override {
    meet(send, [&](const std::vector<const void*>& b) { concat(b, counts, recv); });
  }
  void barrier() override {
    meet(nullptr, [](const std::vector<const void*>&) {});
  }
  [[noreturn]] void abort(int) override { throw std::logic_error("ThreadCollectives::abort"); }

  // Runs fn(collectives) on n threads, one per rank, and waits for them.
  static void run(int n, const std::function<void(Collectives&)>& fn) {
    auto hub = std::make_shared<Hub>(n);
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r)
      threads.emplace_back([hub, r, &fn] {
        ThreadCollectives c(hub, r);
        fn(c);
      });
    for (auto& t : threads) t.join();
  }

 private:
  static void concat(const std::vector<const void*>& b, std::span<const size_t> counts, void* recv) {
    size_t at = 0;
    for (size_t r = 0; r < b.size(); ++r) {
      if (counts[r]) std::memcpy(static_cast<char*>(recv) + at, b[r], counts[r]);
      at += counts[r];
    }
  }
  // All ranks deposit `mine`; then each calls read(all buffers); none returns before all have read.
  void meet(const void* mine, const std::function<void(const std::vector<const void*>&)>& read) {
    std::unique_lock lock(hub_->m);
    hub_->bufs[size_t(rank_)] = mine;
    arrive(lock);
    const std::vector<const void*> bufs = hub_->bufs;
    lock.unlock();
    read(bufs);
    lock.lock();
    arrive(lock);
  }
  void arrive(std::unique_lock<std::mutex>& lock) {
    const int64_t g = hub_->generation;
    if (++hub_->arrived == hub_->n) {
      hub_->arrived = 0;
      ++hub_->generation;
      hub_->cv.notify_all();
    } else {
      hub_->cv.wait(lock, [&] { return hub_->generation != g; });
    }
  }

  std::shared_ptr<Hub> hub_;
  int rank_;
};

}  // namespace dsv3::test
