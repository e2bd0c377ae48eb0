#include "train/data_parallel.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"

namespace dsv3::train {

void run_agreed(Collectives& c, const std::function<void()>& setup) {
  if (c.size() == 1) {
    setup();
    return;
  }
  std::string err;
  try {
    setup();
  } catch (const std::exception& e) {
    err = e.what();
    if (err.empty()) err = "unknown error";
  }
  const size_t N = size_t(c.size());
  std::vector<uint64_t> lens(N);
  const uint64_t mine = err.size();
  const std::vector<size_t> eight(N, sizeof(uint64_t));
  c.all_gather(&mine, eight, lens.data());
  const std::vector<size_t> counts(lens.begin(), lens.end());
  size_t total = 0;
  for (size_t n : counts) total += n;
  std::string all(total, '\0');
  c.all_gather(err.data(), counts, all.data());
  size_t at = 0;
  for (size_t r = 0; r < N; ++r) {
    if (lens[r] > 0) throw JobError(str_cat("rank ", r, ": ", all.substr(at, lens[r])));
    at += lens[r];
  }
}

void check_same_on_all_ranks(Collectives& c, uint64_t value, const char* what) {
  if (c.size() == 1) return;
  const size_t N = size_t(c.size());
  std::vector<uint64_t> all(N);
  c.all_gather(&value, std::vector<size_t>(N, sizeof value), all.data());
  for (size_t r = 1; r < N; ++r)
    if (all[r] != all[0]) throw JobError(str_cat("rank ", r, " was started with other ", what, " than rank 0"));
}

template <typename T>
void broadcast_vector(Collectives& c, std::vector<T>& v, int root) {
  if (c.size() == 1) return;
  uint64_t n = v.size();
  c.broadcast(&n, sizeof n, root);
  v.resize(size_t(n));
  constexpr size_t kPiece = size_t(1) << 30;  // bytes; MPI counts are int
  auto* bytes = reinterpret_cast<char*>(v.data());
  for (size_t at = 0, total = v.size() * sizeof(T); at < total; at += kPiece)
    c.broadcast(bytes + at, std::min(kPiece, total - at), root);
}

template void broadcast_vector<float>(Collectives&, std::vector<float>&, int);
template void broadcast_vector<int32_t>(Collectives&, std::vector<int32_t>&, int);

bool any_rank(Collectives& c, bool flag) {
  float f = flag ? 1.0f : 0.0f;
  c.sum(&f, 1);
  return f > 0;
}

void GradientFold::add(std::span<float> g, int64_t round, bool last) {
  if (c_.rank() == 0) {
    if (round == 0) {
      for (float& x : g) x = 0.0f + x;  // the sum starts at +0: a -0 in g_0 becomes +0
    } else {
      for (size_t i = 0; i < g.size(); ++i) g[i] = acc_[i] + g[i];
    }
  }
  constexpr size_t kPiece = size_t(1) << 28;  // floats (1 GiB): MPI counts are int
  for (size_t at = 0; at < g.size(); at += kPiece) c_.sum(g.data() + at, std::min(kPiece, g.size() - at));
  if (c_.rank() == 0 && !last) acc_.assign(g.begin(), g.end());
}

std::vector<MicroResult> exchange(Collectives& c, const MicroResult& mine, size_t n_loads) {
  DSV3_ASSERT(mine.loads.size() == n_loads);
  const size_t N = size_t(c.size()), bytes = 3 * sizeof(double) + n_loads * sizeof(int64_t);
  std::vector<char> send(bytes), recv(bytes * N);
  const double l[3] = {mine.loss.main, mine.loss.mtp, mine.loss.balance};
  std::memcpy(send.data(), l, sizeof l);
  std::memcpy(send.data() + sizeof l, mine.loads.data(), n_loads * sizeof(int64_t));
  c.all_gather(send.data(), std::vector<size_t>(N, bytes), recv.data());
  std::vector<MicroResult> out(N);
  for (size_t r = 0; r < N; ++r) {
    const char* p = recv.data() + r * bytes;
    double x[3];
    std::memcpy(x, p, sizeof x);
    out[r].loss = LossParts{x[0], x[1], x[2]};
    out[r].loads.resize(n_loads);
    std::memcpy(out[r].loads.data(), p + sizeof x, n_loads * sizeof(int64_t));
  }
  return out;
}

}  // namespace dsv3::train
