// The few collective operations the model needs to run over several processes (tensor- and
// expert-parallel inference, data-parallel training), behind one small interface: the model and
// trainer reach MPI only through this. One process: a no-op implementation (rank 0 of 1). Under
// `mpirun` (built with DSV3_MPI): Open MPI, called from one thread per rank only (the thread
// that calls the model; the thread pool's workers never call these).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/error.h"

namespace dsv3 {

// An error every rank has found and agreed on (a bad layout, a checkpoint one rank could not
// read, found by an exchange between all ranks): rank 0 reports it and every rank exits 1
// normally. Errors one rank finds alone end the whole job instead (Collectives::abort).
class JobError : public Error {
 public:
  using Error::Error;
};

class Collectives {
 public:
  virtual ~Collectives() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Where this process runs, for error messages ("rank 1 (host a, pid 42)").
  virtual std::string describe() const = 0;

  // Copies root's `bytes` bytes at `data` into `data` on every rank.
  virtual void broadcast(void* data, size_t bytes, int root = 0) = 0;
  // broadcast for ranks that may wait long (followers waiting for the next step): the wait
  // polls with growing sleeps (up to about a millisecond) instead of spinning a core.
  virtual void broadcast_idle(void* data, size_t bytes, int root = 0) = 0;
  // Ordered sum: every rank passes n floats; on return every rank holds
  // ((x_0 + x_1) + x_2) + ... + x_{size-1}, added in rank order, so the result has the same
  // bits on every rank whatever the timing (MPI_Allreduce may reorder; this never does).
  virtual void sum(float* data, size_t n) = 0;
  // Every rank contributes counts[rank] bytes from `send`; on `root`, recv receives all
  // contributions in rank order (sum of counts bytes). recv is unused on other ranks.
  virtual void gather(const void* send, std::span<const size_t> counts, void* recv, int root = 0) = 0;
  // As gather, with the result on every rank.
  virtual void all_gather(const void* send, std::span<const size_t> counts, void* recv) = 0;
  virtual void barrier() = 0;

  // Ends every rank of the job at once with exit code `code` (after the caller has printed
  // why): what a rank does on an error the others cannot know about.
  [[noreturn]] virtual void abort(int code) = 0;

  // Seconds this rank spent inside collectives since the last reset (waiting for the other
  // ranks included), for `dsv3 bench`.
  double seconds() const { return seconds_; }
  int64_t calls() const { return calls_; }
  void reset_counters() { seconds_ = 0; calls_ = 0; }

 protected:
  double seconds_ = 0;
  int64_t calls_ = 0;
};

// The collectives of one process alone: rank 0 of 1, every operation a copy or nothing.
class LocalCollectives final : public Collectives {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override;
  void broadcast(void*, size_t, int) override {}
  void broadcast_idle(void*, size_t, int) override {}
  void sum(float*, size_t) override {}
  void gather(const void* send, std::span<const size_t> counts, void* recv, int root) override;
  void all_gather(const void* send, std::span<const size_t> counts, void* recv) override;
  void barrier() override {}
  [[noreturn]] void abort(int code) override;
};

// Runs fn on every rank of `comm`; when it throws on any rank, every rank throws a JobError
// with the message of the lowest failing rank, prefixed by where it ran ("rank 1 (host b,
// pid 42): ..."). One all_gather of fixed-size messages: what a step that may fail on one rank
// alone (opening its copy of a checkpoint) needs so that no rank is left waiting.
void run_on_all(Collectives& comm, const std::function<void()>& fn);
// Checks that every rank passes the same `value` for `what`; otherwise throws JobError on every
// rank naming the first differing rank and both values.
void agree_on(Collectives& comm, const std::string& what, const std::string& value);

// True when this process was started by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE or
// PMIX_RANK), whatever the build.
bool launched_by_mpi();
// True when this build can talk MPI (built with DSV3_MPI).
bool mpi_available();

// The process's collectives, made once by init_collectives (MPI when launched by mpirun in an
// MPI build, local otherwise) and ended by finalize_collectives; until then, local.
Collectives& collectives();
// Initialises MPI when launched by mpirun (throws dsv3::Error when launched by mpirun with
// several ranks in a build without MPI). Call once, from the thread that will call the model.
void init_collectives(int& argc, char**& argv);
// Shuts MPI down cleanly (after every rank has finished its collectives).
void finalize_collectives();

}  // namespace dsv3
