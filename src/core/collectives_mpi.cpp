// Collectives over Open MPI (built with DSV3_MPI). Every operation is a non-blocking MPI call
// completed by polling MPI_Test with growing sleeps in between: Open MPI's blocking calls
// busy-poll, which would take a core from the thread pool (and, when ranks share cores, from
// the rank being waited for).
#include <mpi.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/collectives.h"
#include "core/error.h"

namespace dsv3 {

namespace {

class MpiCollectives final : public Collectives {
 public:
  MpiCollectives() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char host[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    MPI_Get_processor_name(host, &len);
    host_.assign(host, size_t(len));
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    return str_cat("rank ", rank_, " of ", size_, " (host ", host_, ", pid ", ::getpid(), ")");
  }

  void broadcast(void* data, size_t bytes, int root) override { bcast(data, bytes, root, kComputeSleepNs); }
  void broadcast_idle(void* data, size_t bytes, int root) override { bcast(data, bytes, root, kIdleSleepNs); }

  void sum(float* data, size_t n) override {
    if (n == 0) return;
    const auto t0 = std::chrono::steady_clock::now();
    gathered_.resize(n * size_t(size_));
    MPI_Request req;
    MPI_Iallgather(data, int(n), MPI_FLOAT, gathered_.data(), int(n), MPI_FLOAT, MPI_COMM_WORLD, &req);
    wait(req, kComputeSleepNs);
    // Rank order, left to right: the same additions in the same order on every rank.
    for (size_t i = 0; i < n; ++i) data[i] = gathered_[i];
    for (int r = 1; r < size_; ++r) {
      const float* x = &gathered_[size_t(r) * n];
      for (size_t i = 0; i < n; ++i) data[i] += x[i];
    }
    account(t0);
  }

  void gather(const void* send, std::span<const size_t> counts, void* recv, int root) override {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int> c, d;
    displacements(counts, c, d);
    MPI_Request req;
    MPI_Igatherv(send, c[size_t(rank_)], MPI_BYTE, recv, c.data(), d.data(), MPI_BYTE, root, MPI_COMM_WORLD, &req);
    wait(req, kComputeSleepNs);
    account(t0);
  }

  void all_gather(const void* send, std::span<const size_t> counts, void* recv) override {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int> c, d;
    displacements(counts, c, d);
    MPI_Request req;
    MPI_Iallgatherv(send, c[size_t(rank_)], MPI_BYTE, recv, c.data(), d.data(), MPI_BYTE, MPI_COMM_WORLD, &req);
    wait(req, kComputeSleepNs);
    account(t0);
  }

  void barrier() override {
    const auto t0 = std::chrono::steady_clock::now();
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    wait(req, kIdleSleepNs);
    account(t0);
  }

  void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  // Longest sleep between two polls: inside a forward step the other ranks are a few
  // microseconds to milliseconds away (a short sleep keeps the step's latency); between steps a
  // follower may wait for minutes (a millisecond is nothing next to a step, and the core stays free).
  static constexpr long kComputeSleepNs = 50'000;
  static constexpr long kIdleSleepNs = 1'000'000;
  // Polls without sleeping first: most in-step waits end within this.
  static constexpr int kSpinPolls = 2000;

  void bcast(void* data, size_t bytes, int root, long max_sleep_ns) {
    if (bytes == 0) return;
    const auto t0 = std::chrono::steady_clock::now();
    DSV3_ASSERT(bytes <= size_t(INT32_MAX));
    MPI_Request req;
    MPI_Ibcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &req);
    wait(req, max_sleep_ns);
    account(t0);
  }

  // Completes `req`: MPI_Test in a loop, spinning first, then sleeping between polls for
  // doubling intervals from 1 us up to max_sleep_ns.
  static void wait(MPI_Request& req, long max_sleep_ns) {
    int done = 0;
    for (int i = 0; i < kSpinPolls; ++i) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done) return;
    }
    long sleep_ns = 1000;
    while (true) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done) return;
      timespec ts{0, sleep_ns};
      nanosleep(&ts, nullptr);
      sleep_ns = std::min(max_sleep_ns, sleep_ns * 2);
    }
  }

  void displacements(std::span<const size_t> counts, std::vector<int>& c, std::vector<int>& d) const {
    DSV3_ASSERT(counts.size() == size_t(size_));
    size_t at = 0;
    for (size_t n : counts) {
      DSV3_ASSERT(at + n <= size_t(INT32_MAX));
      c.push_back(int(n));
      d.push_back(int(at));
      at += n;
    }
  }

  void account(std::chrono::steady_clock::time_point t0) {
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++calls_;
  }

  int rank_ = 0, size_ = 1;
  std::string host_;
  std::vector<float> gathered_;
};

}  // namespace

bool mpi_available() { return true; }

namespace detail {

std::unique_ptr<Collectives> make_mpi_collectives(int& argc, char**& argv) {
  int provided = 0;
  // SERIALIZED: one thread at a time calls MPI (the thread that runs the model: the main thread,
  // or the server's scheduler thread); the pool's workers never do.
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  DSV3_CHECK(provided >= MPI_THREAD_SERIALIZED, "MPI does not provide MPI_THREAD_SERIALIZED (got level ", provided, ")");
  return std::make_unique<MpiCollectives>();
}

void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace detail

}  // namespace dsv3
