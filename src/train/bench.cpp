#include "train/bench.h"

#include <chrono>
#include <cstdio>
#include <vector>

#include "train/gemm.h"
#include "train/rng.h"

namespace dsv3::train {

int run_bench(int threads) {
  const double peak1 = measure_fma_peak_gflops(1, 1.0), peak = measure_fma_peak_gflops(threads, 1.0);
  std::printf("FMA peak (F32): %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n", peak1, peak, threads);
  ThreadPool pool(threads);
  struct Case {
    const char* what;
    int64_t M, N, K;
    int kind;  // 0 nt (forward), 1 nn (dgrad), 2 tn (wgrad)
  };
  // Default preset, 2048 tokens per micro-batch: dense MLP and attention projections.
  const Case cases[] = {{"forward x[2048,256] W[768,256]^T", 2048, 768, 256, 0},
                        {"dgrad dy[2048,768] W[768,256]", 2048, 256, 768, 1},
                        {"wgrad dy^T[768,2048] x[2048,256]", 768, 256, 2048, 2},
                        {"head x[2048,256] W[4096,256]^T", 2048, 4096, 256, 0}};
  Rng r(1);
  for (const Case& c : cases) {
    std::vector<float> A(size_t(c.M * c.K)), B(size_t(c.K * c.N)), C(size_t(c.M * c.N));
    for (float& v : A) v = float(r.normal());
    for (float& v : B) v = float(r.normal());
    auto once = [&] {
      if (c.kind == 0) gemm_nt(C.data(), A.data(), B.data(), c.M, c.N, c.K, false, &pool);
      if (c.kind == 1) gemm_nn(C.data(), A.data(), B.data(), c.M, c.N, c.K, false, &pool);
      if (c.kind == 2) gemm_tn(C.data(), A.data(), B.data(), c.M, c.N, c.K, false, &pool);
    };
    once();
    int reps = 0;
    const auto t0 = std::chrono::steady_clock::now();
    double s = 0;
    while (s < 0.5) {
      once();
      ++reps;
      s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const double gf = 2.0 * double(c.M * c.N * c.K) * reps / s / 1e9;
    std::printf("%-36s %7.1f GFLOP/s  %5.1f%% of peak\n", c.what, gf, 100 * gf / peak);
  }
  return 0;
}

}  // namespace dsv3::train
