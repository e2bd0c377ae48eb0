// Run under mpirun by mpi_test.cpp: checks every collective against what each rank can compute
// alone, and prints one "ok rank R of N" line per rank; exits non-zero on any mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/collectives.h"
#include "core/error.h"

namespace {

// Values every rank can compute for any rank r: spread over many magnitudes, so that a sum in
// another order would round differently.
float value(int r, size_t i) { return std::ldexp(1.0f + 0.1f * float(r) + 1e-3f * float(i), int(i % 40) - 20 + 3 * r); }

int check(dsv3::Collectives& c) {
  const int rank = c.rank(), n = c.size();
  int bad = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "probe: %s: %s failed\n", c.describe().c_str(), what);
      ++bad;
    }
  };
  // broadcast from every root
  for (int root = 0; root < n; ++root) {
    int v[3] = {rank, rank * 7, -1};
    c.broadcast(v, sizeof v, root);
    expect(v[0] == root && v[1] == root * 7, "broadcast");
    double d = rank == root ? 3.25 * root : 0.0;
    c.broadcast_idle(&d, sizeof d, root);
    expect(d == 3.25 * root, "broadcast_idle");
  }
  // ordered sum: left to right in rank order, bit for bit
  const size_t len = 1000;
  std::vector<float> x(len), want(len);
  for (size_t i = 0; i < len; ++i) {
    x[i] = value(rank, i);
    float s = value(0, i);
    for (int r = 1; r < n; ++r) s += value(r, i);
    want[i] = s;
  }
  c.sum(x.data(), len);
  expect(std::memcmp(x.data(), want.data(), len * sizeof(float)) == 0, "sum (rank order, bitwise)");
  // gather and all_gather with uneven counts: rank r sends r + 1 ints
  std::vector<size_t> counts;
  size_t total = 0;
  for (int r = 0; r < n; ++r) counts.push_back(size_t(r + 1) * sizeof(int)), total += size_t(r + 1);
  std::vector<int> mine(size_t(rank + 1), 100 * rank), all(total, -1), expect_all;
  for (int r = 0; r < n; ++r) expect_all.insert(expect_all.end(), size_t(r + 1), 100 * r);
  c.all_gather(mine.data(), counts, all.data());
  expect(all == expect_all, "all_gather");
  std::fill(all.begin(), all.end(), -1);
  c.gather(mine.data(), counts, all.data(), n - 1);
  if (rank == n - 1) expect(all == expect_all, "gather");
  c.barrier();
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    dsv3::init_collectives(argc, argv);
    dsv3::Collectives& c = dsv3::collectives();
    const int bad = check(c);
    std::printf("%s rank %d of %d\n", bad ? "FAILED" : "ok", c.rank(), c.size());
    std::fflush(stdout);
    dsv3::finalize_collectives();
    return bad ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "probe: error: %s\n", e.what());
    return 1;
  }
}
