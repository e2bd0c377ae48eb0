// The single-process collectives, and the process-wide instance.
#include "core/collectives.h"

#include <pthread.h>
#include <unistd.h>

#include <csignal>

#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>
#include <algorithm>

#include "core/error.h"

namespace dsv3 {

std::string LocalCollectives::describe() const { return str_cat("rank 0 of 1 (pid ", ::getpid(), ")"); }

void LocalCollectives::gather(const void* send, std::span<const size_t> counts, void* recv, int root) {
  DSV3_ASSERT(counts.size() == 1 && root == 0);
  if (counts[0]) std::memmove(recv, send, counts[0]);
}

void LocalCollectives::all_gather(const void* send, std::span<const size_t> counts, void* recv) {
  gather(send, counts, recv, 0);
}

void LocalCollectives::abort(int code) { std::_Exit(code); }

namespace {
// Each rank's message in a fixed-size slot (longer ones are cut).
std::vector<std::string> exchange_messages(Collectives& comm, const std::string& mine) {
  constexpr size_t kSlot = 1024;
  std::vector<char> slot(kSlot, '\0'), all(kSlot * size_t(comm.size()));
  std::memcpy(slot.data(), mine.data(), std::min(mine.size(), kSlot - 1));
  const std::vector<size_t> counts(size_t(comm.size()), kSlot);
  comm.all_gather(slot.data(), counts, all.data());
  std::vector<std::string> out;
  for (int r = 0; r < comm.size(); ++r) out.emplace_back(&all[size_t(r) * kSlot]);
  return out;
}
}  // namespace

void run_on_all(Collectives& comm, const std::function<void()>& fn) {
  if (comm.size() == 1) return fn();
  std::string error;
  try {
    fn();
  } catch (const std::exception& e) {
    error = comm.describe() + ": " + e.what();
  }
  for (const std::string& e : exchange_messages(comm, error))
    if (!e.empty()) throw JobError(e);
}

void agree_on(Collectives& comm, const std::string& what, const std::string& value) {
  if (comm.size() == 1) return;
  const auto all = exchange_messages(comm, comm.describe() + "\n" + value);
  const std::string v0 = all[0].substr(all[0].find('\n') + 1);
  for (const std::string& a : all) {
    const size_t nl = a.find('\n');
    if (a.substr(nl + 1) != v0)
      throw JobError(str_cat(a.substr(0, nl), " has a different ", what, " than rank 0: ", a.substr(nl + 1), " vs ", v0));
  }
}

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_RANK") != nullptr;
}

namespace detail {
// Defined in collectives_mpi.cpp (DSV3_MPI builds) or below: MPI's collectives when launched
// by mpirun, null otherwise.
std::unique_ptr<Collectives> make_mpi_collectives(int& argc, char**& argv);
void finalize_mpi();
}  // namespace detail

namespace {
LocalCollectives local_collectives;
std::unique_ptr<Collectives> process_collectives;
}  // namespace

Collectives& collectives() { return process_collectives ? *process_collectives : local_collectives; }

void init_collectives(int& argc, char**& argv) {
  DSV3_ASSERT(!process_collectives);
  if (!launched_by_mpi()) return;
  if (!mpi_available()) {
    const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
    DSV3_CHECK(n == nullptr || std::atoi(n) <= 1, "launched by mpirun with ", n,
               " ranks, but this dsv3 was built without MPI (configure with -DDSV3_MPI=ON after scripts/setup)");
    return;
  }
  // Open MPI starts threads of its own in MPI_Init. They must not take the process's SIGINT and
  // SIGTERM (the default action ends the process; `serve` waits for them with sigwait to shut
  // down cleanly), so they start with those signals blocked; this thread then unblocks them.
  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, &old);
  process_collectives = detail::make_mpi_collectives(argc, argv);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void finalize_collectives() {
  if (!process_collectives) return;
  process_collectives.reset();
  detail::finalize_mpi();
}

#ifndef DSV3_HAVE_MPI
bool mpi_available() { return false; }
namespace detail {
std::unique_ptr<Collectives> make_mpi_collectives(int&, char**&) { return nullptr; }
void finalize_mpi() {}
}  // namespace detail
#endif

}  // namespace dsv3
