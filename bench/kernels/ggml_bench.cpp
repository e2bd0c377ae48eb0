// linear over ggml block formats (simd/qblocks.h) for every variant, against the machine's limits:
// decode (n = 1) from DRAM in GB/s of weights (compare stream/read of dsv3_bench_kernels in the
// same run), the L2-resident compute ceiling in G weights/s per core, and prefill (n = 512)
// in GMAC/s per core (compare fma_peak: VPMADDWD does 32 int16 multiply-adds per zmm), and the
// decode tiles against linear (the GEMM from gemm_min_tokens on) around the crossover.
// Run: build/bench/kernels/dsv3_bench_ggml   (docs/kernels.md has the reference numbers)
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <time.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/ggml_blocks.h"
#include "core/thread_pool.h"
#include "kernels/variant.h"

namespace dsv3::kernels {
namespace {

constexpr size_t kWorkingSetBytes = size_t(256) << 20;  // far beyond L3: DRAM numbers

ThreadPool& pool(int threads) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Copies of one [rows, cols] matrix of Gaussian weights quantized to `dtype`, in anonymous
// memory with huge pages requested, enough to fill `working_set` (one copy if 0). Only the first
// kDistinctRows rows are quantized and the rest repeat them: the K-quants' scale search made the
// setup take longer than the measurement (the kernels' integer work does not depend on values).
struct BlockWeights {
  BlockWeights(DType dtype, int64_t rows, int64_t cols, size_t working_set) {
    bytes = size_t(rows) * dtype_row_bytes(dtype, cols);
    copies = std::max<size_t>(1, (working_set + bytes - 1) / bytes);
    size = bytes * copies;
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, size, MADV_HUGEPAGE);
    data = static_cast<uint8_t*>(p);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0, 0.02f);
    std::vector<float> row(static_cast<size_t>(cols));
    const size_t row_bytes = dtype_row_bytes(dtype, cols);
    constexpr int64_t kDistinctRows = 16;
    for (int64_t r = 0; r < rows; ++r) {
      uint8_t* dst = data + size_t(r) * row_bytes;
      if (r >= kDistinctRows) {
        std::memcpy(dst, data + size_t(r % kDistinctRows) * row_bytes, row_bytes);
        continue;
      }
      for (auto& v : row) v = nd(rng);
      ggml::quantize(dtype, row.data(), cols, dst);
    }
    for (size_t k = 1; k < copies; ++k) std::memcpy(data + k * bytes, data, bytes);
    for (size_t k = 0; k < copies; ++k) views.push_back(Matrix{dtype, rows, cols, data + k * bytes});
  }
  ~BlockWeights() { munmap(data, size); }
  BlockWeights(const BlockWeights&) = delete;
  BlockWeights& operator=(const BlockWeights&) = delete;
  uint8_t* data;
  size_t bytes, copies, size;
  std::vector<Matrix> views;
};

void linear_bench(benchmark::State& state, const Variant* v, DType dtype, int64_t rows, int64_t cols, int64_t n,
                  int threads, size_t working_set) {
  BlockWeights w(dtype, rows, cols, working_set);
  std::vector<float> x(size_t(n * cols)), y(size_t(n * rows));
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0, 1);
  for (auto& e : x) e = nd(rng);
  size_t k = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    linear_with(*v, w.views[k], x.data(), y.data(), n, threads > 1 ? &pool(threads) : nullptr);
    k = k + 1 == w.copies ? 0 : k + 1;
    benchmark::DoNotOptimize(y.data());
  }
  const double cpu = process_cpu_seconds() - cpu0, macs = double(state.iterations()) * double(rows * cols * n);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(w.bytes));
  state.counters["GMAC/s/core"] = macs * 1e-9 / cpu;
  state.counters["Gweights/s/core"] = double(state.iterations()) * double(rows * cols) * 1e-9 / cpu;
}

// The decode tiles (linear_rows) alone for n tokens, one thread: against linear_with at the same n,
// where the GEMM should take over (gemm_min_tokens).
void tiles_bench(benchmark::State& state, const Variant* v, DType dtype, int64_t rows, int64_t cols, int64_t n) {
  BlockWeights w(dtype, rows, cols, 0);
  std::vector<float> x(size_t(n * cols)), y(size_t(n * rows)), scratch(size_t(kLinearScratchRows * cols));
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0, 1);
  for (auto& e : x) e = nd(rng);
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    v->linear_rows(w.views[0], x.data(), y.data(), n, 0, rows, scratch.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double cpu = process_cpu_seconds() - cpu0;
  state.counters["GMAC/s/core"] = double(state.iterations()) * double(rows * cols * n) * 1e-9 / cpu;
}

void register_all() {
  const DType types[] = {DType::Q8_0, DType::Q6_K, DType::Q5_K, DType::Q4_K, DType::Q3_K,
                         DType::Q2_K, DType::Q5_0, DType::Q4_0, DType::Q4_1, DType::Q5_1};
  for (const Variant* v : compiled_variants()) {
    if (!missing_cpu_feature(*v).empty()) continue;
    const std::string vn = v->name;
    for (DType t : types) {
      const std::string tn(dtype_name(t));
      // The GEMM (n >= 24; avx512bf16 runs avx512's) with the weights in L2, one thread: its
      // compute rate, against the int16 dot-product peak (dsv3 bench's int16_dot_peak).
      if (vn != "scalar")
        benchmark::RegisterBenchmark(("gemm/ggml/" + tn + "/256x7168/n:96/threads:1/" + vn).c_str(), linear_bench, v, t,
                                     256, 7168, 96, 1, size_t(0))
            ->UseRealTime()
            ->MinTime(0.3);
      if (v->bf16_activations) continue;  // avx512bf16: avx512's decode kernels for these
      // Where the GEMM takes over from the tiles (gemm_min_tokens: avx2 8, avx512 24).
      if (vn != "scalar" && (t == DType::Q8_0 || t == DType::Q4_K || t == DType::Q6_K))
        for (int64_t n : {8, 16, 24, 32}) {
          const std::string at = tn + "/256x7168/n:" + std::to_string(n) + "/threads:1/";
          benchmark::RegisterBenchmark(("cross/ggml/" + at + "tiles/" + vn).c_str(), tiles_bench, v, t, 256, 7168, n)
              ->UseRealTime()
              ->MinTime(0.2);
          benchmark::RegisterBenchmark(("cross/ggml/" + at + "linear/" + vn).c_str(), linear_bench, v, t, 256, 7168, n, 1,
                                       size_t(0))
              ->UseRealTime()
              ->MinTime(0.2);
        }
      if (vn != "scalar") {
        // L2-resident ceiling: 48 x 7168, one thread.
        for (int64_t n : {1, 4})
          benchmark::RegisterBenchmark(("hot/ggml/" + tn + "/48x7168/n:" + std::to_string(n) + "/" + vn).c_str(),
                                       linear_bench, v, t, 48, 7168, n, 1, size_t(0))
              ->UseRealTime()
              ->MinTime(0.2);
      }
      for (int threads : {1, 2})
        benchmark::RegisterBenchmark(
            ("ggml/" + tn + "/w1_expert_2048x7168/n:1/threads:" + std::to_string(threads) + "/" + vn).c_str(),
            linear_bench, v, t, 2048, 7168, 1, threads, kWorkingSetBytes)
            ->UseRealTime()
            ->MinTime(vn == "scalar" ? 0.05 : 0.3);
      if (vn != "scalar")
        benchmark::RegisterBenchmark(("ggml/" + tn + "/w1_expert_2048x7168/n:512/threads:2/" + vn).c_str(), linear_bench,
                                     v, t, 2048, 7168, 512, 2, size_t(0))
            ->UseRealTime()
            ->MinTime(0.5);
    }
  }
}

}  // namespace
}  // namespace dsv3::kernels

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("default_kernel_variant", dsv3::kernels::active().name);
  dsv3::kernels::register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
