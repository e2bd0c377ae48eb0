// Kernel throughput of every variant at DeepSeek-V3's shapes, against the machine's limits.
// Decode (matrix x vector, n = 1) is bandwidth-bound: bytes of weights read per second next to a
// STREAM-style read and copy of the same memory. Prefill (n >= 8, the GEMM) is compute-bound:
// GFLOP/s per core next to the FMA peak measured by fma_peak/*.
// Run: build/bench/kernels/dsv3_bench_kernels   (docs/kernels.md has the reference numbers)
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <time.h>

#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "core/fma_peak.h"
#include "kernels/variant.h"

namespace dsv3::kernels {
namespace {

// Every benchmark reads at least this much distinct memory per pass (several copies of a
// small matrix, used in turn), far beyond the 32 MiB L3, so numbers are DRAM numbers.
constexpr size_t kWorkingSetBytes = size_t(256) << 20;

// Anonymous memory with transparent huge pages requested (as `--no-mmap` weights would be):
// with 4 KiB pages the TLB, not DRAM, limits a matvec over hundreds of MB.
struct Buffer {
  explicit Buffer(size_t bytes) : size(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, bytes, MADV_HUGEPAGE);
    data = static_cast<uint8_t*>(p);
    std::memset(data, 0, bytes);  // fault every page in before timing
  }
  ~Buffer() { munmap(data, size); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint8_t* data;
  size_t size;
};

ThreadPool& pool(int threads) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

// STREAM-style read: sum 64-bit words with four independent chains; each thread a slice.
void BM_MemoryRead(benchmark::State& state) {
  const int threads = int(state.range(0));
  Buffer buf(kWorkingSetBytes);
  const auto* words = reinterpret_cast<const uint64_t*>(buf.data);
  const int64_t n = int64_t(buf.size / 8);
  std::vector<uint64_t> sums(size_t(threads) * 8);  // one cache line per thread
  for (auto _ : state) {
    pool(threads).parallel_for(n / 4, [&](int64_t b, int64_t e) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t i = 4 * b; i < 4 * e; i += 4) {
        s0 += words[i];
        s1 += words[i + 1];
        s2 += words[i + 2];
        s3 += words[i + 3];
      }
      sums[size_t(b * threads / (n / 4)) * 8] = s0 ^ s1 ^ s2 ^ s3;
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(buf.size));
}
BENCHMARK(BM_MemoryRead)->Name("stream/read")->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->MinTime(0.5);

// STREAM copy: bytes counted as read + written, as STREAM does.
void BM_MemoryCopy(benchmark::State& state) {
  const int threads = int(state.range(0));
  Buffer src(kWorkingSetBytes / 2), dst(kWorkingSetBytes / 2);
  const int64_t n = int64_t(src.size);
  for (auto _ : state) {
    pool(threads).parallel_for(n / 4096, [&](int64_t b, int64_t e) {
      std::memcpy(dst.data + b * 4096, src.data + b * 4096, size_t(e - b) * 4096);
    });
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * 2 * n);
}
BENCHMARK(BM_MemoryCopy)->Name("stream/copy")->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->MinTime(0.5);

struct Shape {
  const char* name;  // DeepSeek-V3 tensor, HF shape [out, in]
  int64_t rows, cols;
};
const Shape kShapes[] = {
    {"w1_expert", 2048, 7168},  // mlp.experts.*.gate_proj / up_proj
    {"w2_expert", 7168, 2048},  // mlp.experts.*.down_proj
    {"wq_a", 1536, 7168},       // self_attn.q_a_proj
    {"wq_b", 24576, 1536},      // self_attn.q_b_proj
};

// Enough copies of a [rows, cols] matrix of `dtype` to fill the working set (or one copy, for
// the cache-resident "hot" benchmarks), random codes.
struct Weights {
  Weights(DType dtype, int64_t rows, int64_t cols, size_t working_set = kWorkingSetBytes) {
    const size_t bytes = size_t(rows * cols) * dtype_size(dtype);
    copies = std::max<size_t>(1, (working_set + bytes - 1) / bytes);
    buf = std::make_unique<Buffer>(bytes * copies);
    // Codes distributed as in a real checkpoint: Gaussian weights quantized per block with the
    // block's |max| (about 4.5 sigma) mapped to 448, so FP8 subnormals are rare (~1e-4), as in
    // DeepSeek-V3's files. A 64 Ki table of such codes, indexed by a hash, fills 256 MiB fast.
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0, 1);
    std::vector<uint16_t> table(1 << 16);
    for (auto& t : table) t = dtype == DType::F8_E4M3 ? f32_to_fp8e4m3(nd(rng) * 448.0f / 4.5f) : f32_to_bf16(nd(rng) * 0.02f);
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < buf->size / dtype_size(dtype); ++i) {
      h ^= h << 13, h ^= h >> 7, h ^= h << 17;
      const uint16_t code = table[h & 0xffff];
      if (dtype == DType::F8_E4M3)
        buf->data[i] = uint8_t(code);
      else
        std::memcpy(buf->data + 2 * i, &code, 2);
    }
    const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    scales.assign(size_t(sr * sc), 1e-2f);
    for (size_t k = 0; k < copies; ++k) {
      Matrix m{dtype, rows, cols, buf->data + k * bytes};
      if (dtype == DType::F8_E4M3) {
        m.scale = scales.data();
        m.scale_cols = sc;
      }
      views.push_back(m);
    }
    weight_bytes = bytes;
  }
  size_t copies, weight_bytes;
  std::unique_ptr<Buffer> buf;
  std::vector<float> scales;
  std::vector<Matrix> views;
};

double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// How a benchmark calls the kernel: "ops" as ops.h's linear does (linear_rows for few tokens,
// the GEMM for many), "rows" forcing linear_rows (the dot-product tile the GEMM replaced).
enum class Path { kOps, kRows };

// Counters: GB/s of weights and GFLOP/s in real time (what a caller waits), and GFLOP/s per
// core in process CPU time (the figure to hold against fma_peak: on shared cores real time
// also counts the time other processes ran).
void linear_bench(benchmark::State& state, const Variant* v, DType dtype, Shape s, int64_t n, int threads, Path path,
                  size_t working_set) {
  Weights w(dtype, s.rows, s.cols, working_set);
  std::vector<float> x(size_t(n * s.cols)), y(size_t(n * s.rows));
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0, 1);
  for (auto& e : x) e = nd(rng);
  size_t k = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    const Matrix& m = w.views[k];
    k = k + 1 == w.copies ? 0 : k + 1;
    if (path == Path::kOps) {
      linear_with(*v, m, x.data(), y.data(), n, &pool(threads));
    } else {
      pool(threads).parallel_for(m.rows, [&](int64_t r0, int64_t r1) {
        thread_local std::vector<float> scratch;
        scratch.resize(size_t(kLinearScratchRows * m.cols));
        v->linear_rows(m, x.data(), y.data(), n, r0, r1, scratch.data());
      });
    }
    benchmark::DoNotOptimize(y.data());
  }
  const double cpu = process_cpu_seconds() - cpu0, flops = double(state.iterations()) * 2.0 * double(s.rows * s.cols * n);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(w.weight_bytes));
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s/core"] = flops * 1e-9 / cpu;
  state.counters["Gweights/s/core"] = double(state.iterations()) * double(s.rows * s.cols) * 1e-9 / cpu;
}

std::string linear_name(DType dtype, const Shape& s, int64_t n, int threads, const Variant* v, Path path) {
  return std::string("linear/") + (dtype == DType::F8_E4M3 ? "fp8" : "bf16") + "/" + s.name + "_" +
         std::to_string(s.rows) + "x" + std::to_string(s.cols) + "/n:" + std::to_string(n) +
         "/threads:" + std::to_string(threads) + "/" + v->name + (path == Path::kRows ? "/rows" : "");
}

// The compiled variants this CPU runs, then, where avx512bf16 runs, that variant with each of
// its two FP8 paths fixed ("avx512bf16-lookup", "avx512bf16-fma"; plain "avx512bf16" takes the
// one it timed faster here, named in the context as avx512bf16_fp8). The fixed ones differ from
// avx512bf16 only for FP8 weights, so they run only FP8 benchmarks.
std::vector<const Variant*> runnable_variants() {
  std::vector<const Variant*> out;
  bool bf16 = false;
  for (const Variant* v : compiled_variants())
    if (missing_cpu_feature(*v).empty()) {
      out.push_back(v);
      bf16 = bf16 || std::string(v->name) == "avx512bf16";
    }
  if (bf16) {
    out.push_back(bf16_variant_with(Fp8Dot::kLookup));
    out.push_back(bf16_variant_with(Fp8Dot::kFma));
  }
  return out;
}
bool fp8_only(const Variant* v) { return std::string(v->name).find("avx512bf16-") == 0; }

void register_linear() {
  for (const Variant* v : runnable_variants()) {
    for (DType dtype : {DType::F8_E4M3, DType::BF16})
      for (const Shape& s : kShapes)
        for (int threads : {1, 2}) {
          if (fp8_only(v) && dtype != DType::F8_E4M3) continue;
          benchmark::RegisterBenchmark(linear_name(dtype, s, 1, threads, v, Path::kOps).c_str(), linear_bench, v, dtype, s,
                                       1, threads, Path::kOps, kWorkingSetBytes)
              ->UseRealTime()
              ->MinTime(0.2);
        }
  }
}

// Prefill: the GEMM at n = 8..512 tokens, and the dot-product tile it replaced ("/rows").
// The scalar reference is left out (seconds per call at these sizes).
void register_prefill() {
  for (const Variant* v : compiled_variants()) {
    if (!missing_cpu_feature(*v).empty() || v->gemm == nullptr) continue;
    for (DType dtype : {DType::F8_E4M3, DType::BF16})
      for (const Shape& s : kShapes)
        for (int64_t n : {8, 16, 24, 32, 128, 512}) {
          if (s.rows > 8192) continue;  // wq_b: decode only (the three others cover prefill's shapes)
          for (int threads : {1, 2})
            for (Path path : {Path::kOps, Path::kRows})
              benchmark::RegisterBenchmark(linear_name(dtype, s, n, threads, v, path).c_str(), linear_bench, v, dtype, s,
                                           n, threads, path, kWorkingSetBytes)
                  ->UseRealTime()
                  ->MinTime(0.5);
        }
  }
}

// The kernels' compute ceiling: one thread, a 48 x 7168 matrix that stays in L2 (FP8 336 KiB,
// BF16 672 KiB), so no DRAM stall hides the decode and FMA cost; G weights/s per core in CPU
// time. "hot/" in the name.
void register_hot() {
  for (const Variant* v : runnable_variants()) {
    if (std::string(v->name) == "scalar") continue;
    for (DType dtype : {DType::F8_E4M3, DType::BF16})
      for (int64_t n : {1, 2, 3, 4, 5, 8, 12, 16, 23}) {
        if (fp8_only(v) && dtype != DType::F8_E4M3) continue;
        const Shape s{"hot", 48, 7168};
        const std::string name = "hot/" + linear_name(dtype, s, n, 1, v, Path::kOps);
        benchmark::RegisterBenchmark(name.c_str(), linear_bench, v, dtype, s, n, 1, Path::kOps, size_t(0))
            ->UseRealTime()
            ->MinTime(0.2);
      }
  }
}

// Attention's products in the expanded MLA form, one head and a block of 128 queries of a
// 512-token window (V3's qk_head_dim 192, v_head_dim 128), on one thread: kernels::matmul
// ("matmul/") against the float32 GEMM of linear that ran them before ("/linear", the keys or
// transposed values as an F32 weight), GFLOP/s per core in CPU time.
void register_attention() {
  struct Product { const char* name; int64_t m, n, k; bool b_trans; };
  const Product products[] = {{"scores", 128, 512, 192, true}, {"values", 128, 128, 512, false}};
  for (const Variant* v : compiled_variants()) {
    if (!missing_cpu_feature(*v).empty() || std::string(v->name) == "scalar") continue;
    for (const Product& p : products)
      for (bool via_linear : {false, true}) {
        const std::string name = std::string("matmul/") + p.name + "/m:" + std::to_string(p.m) + "/n:" +
                                 std::to_string(p.n) + "/k:" + std::to_string(p.k) + "/" + v->name +
                                 (via_linear ? "/linear" : "");
        benchmark::RegisterBenchmark(name.c_str(), [v, p, via_linear](benchmark::State& state) {
          std::mt19937 rng(3);
          std::normal_distribution<float> nd(0, 1);
          std::vector<float> a(size_t(p.m * p.k)), b(size_t(p.k * p.n)), c(size_t(p.m * p.n));
          for (auto& e : a) e = nd(rng);
          for (auto& e : b) e = nd(rng);
          // linear's weight is [n, k] (rows = C's columns): the keys as stored, the values transposed
          const Matrix w{DType::F32, p.n, p.k, b.data()};
          const double cpu0 = process_cpu_seconds();
          for (auto _ : state) {
            if (via_linear)
              linear_with(*v, w, a.data(), c.data(), p.m, nullptr);
            else
              v->matmul(p.m, p.n, p.k, a.data(), p.k, b.data(), p.b_trans ? p.k : p.n, p.b_trans, c.data(), p.n);
            benchmark::DoNotOptimize(c.data());
          }
          const double flops = double(state.iterations()) * 2.0 * double(p.m * p.n * p.k);
          state.counters["GFLOP/s/core"] = flops * 1e-9 / (process_cpu_seconds() - cpu0);
        })->UseRealTime()->MinTime(0.3);
      }
  }
}

// The absorbed MLA form's transposed products, one thread, GFLOP/s per core in CPU time: one
// head's W_uk^T q_nope ([128, 512] slice of V3's kv_b_proj, FP8, the slice hot in cache as in a
// layer's head loop) for n tokens, and the latent output of a chunk of the cache.
void register_transposed() {
  for (const Variant* v : compiled_variants()) {
    if (!missing_cpu_feature(*v).empty() || std::string(v->name) == "scalar") continue;
    for (int64_t n : {1, 2, 4, 8, 16}) {
      const std::string name = "transposed/fp8/w_uk_128x512/n:" + std::to_string(n) + "/" + v->name;
      benchmark::RegisterBenchmark(name.c_str(), [v, n](benchmark::State& state) {
        Weights w(DType::F8_E4M3, 128, 512, size_t(0));
        std::vector<float> x(size_t(n * 128), 0.5f), y(size_t(n * 512));
        const double cpu0 = process_cpu_seconds();
        for (auto _ : state) {
          v->linear_transposed_acc(w.views[0], x.data(), y.data(), n);
          benchmark::DoNotOptimize(y.data());
        }
        const double flops = double(state.iterations()) * 2.0 * 128 * 512 * double(n);
        state.counters["GFLOP/s/core"] = flops * 1e-9 / (process_cpu_seconds() - cpu0);
      })->UseRealTime()->MinTime(0.2);
    }
    // The latent output o = K^T p of one attention chunk: 256 cached rows [c_kv | k_pe] of 576
    // BF16 values (the BF16 latent cache, hot in cache: the score product has just read it)
    // for the n heads of a group as tokens (medium and V3 decode: 16).
    // "scores": the chunk's other product, K [q_abs | q_pe] (linear), for comparison.
    for (int64_t n : {4, 8, 16})
      for (bool scores : {false, true}) {
        const std::string name = std::string(scores ? "scores" : "transposed") + "/bf16/latent_256x576/n:" +
                                 std::to_string(n) + "/" + v->name;
        benchmark::RegisterBenchmark(name.c_str(), [v, n, scores](benchmark::State& state) {
          Weights w(DType::BF16, 256, 576, size_t(0));
          std::vector<float> x(size_t(n * 576), 1.0f / 256), y(size_t(n * 576));
          std::vector<float> scratch(size_t(kLinearScratchRows * 576));
          const double cpu0 = process_cpu_seconds();
          for (auto _ : state) {
            if (scores)
              v->linear_rows(w.views[0], x.data(), y.data(), n, 0, 256, scratch.data());
            else
              v->linear_transposed_acc(w.views[0], x.data(), y.data(), n);
            benchmark::DoNotOptimize(y.data());
          }
          const double flops = double(state.iterations()) * 2.0 * 256 * 576 * double(n);
          state.counters["GFLOP/s/core"] = flops * 1e-9 / (process_cpu_seconds() - cpu0);
        })->UseRealTime()->MinTime(0.2);
      }
  }
}

// FMA peak per core (see fma_peak.cpp), for 1 and 2 threads at once.
void register_fma_peak() {
  for (const Variant* v : compiled_variants()) {
    const std::string isa = v->name;
    if (!missing_cpu_feature(*v).empty() || (isa != "avx512" && isa != "avx2")) continue;
    for (int threads : {1, 2}) {
      const std::string name = "fma_peak/" + isa + "/threads:" + std::to_string(threads);
      benchmark::RegisterBenchmark(name.c_str(), [isa, threads](benchmark::State& state) {
        double sum = 0;
        for (auto _ : state) sum += fma_peak_gflops_per_core(isa, threads, int64_t(20) << 20);
        state.counters["GFLOP/s/core"] = sum / double(state.iterations());
      })->UseRealTime()->MinTime(0.5);
    }
  }
}

}  // namespace
}  // namespace dsv3::kernels

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(thp, mode);
  benchmark::AddCustomContext("transparent_hugepage", mode.empty() ? "unknown" : mode);
  benchmark::AddCustomContext("pages", "anonymous memory, madvise(MADV_HUGEPAGE)");
  benchmark::AddCustomContext("default_kernel_variant", dsv3::kernels::active().name);
  if (const std::string path = dsv3::kernels::bf16_fp8_path(); !path.empty())
    benchmark::AddCustomContext("avx512bf16_fp8", path);
  dsv3::kernels::register_fma_peak();
  dsv3::kernels::register_hot();
  dsv3::kernels::register_linear();
  dsv3::kernels::register_prefill();
  dsv3::kernels::register_attention();
  dsv3::kernels::register_transposed();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
