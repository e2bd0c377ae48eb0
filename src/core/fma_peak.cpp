// The machine's FMA ceiling, against which the GEMM figures are quoted: independent chains of
// vector FMAs (enough to cover latency x pipes), no memory traffic. Reported per core, in
// FLOP per second of the thread's own CPU time, so that sharing the cores with other
// processes lowers the iteration count, not the figure.
#include "core/fma_peak.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <time.h>

#include <thread>
#include <vector>

namespace dsv3 {
namespace {

#if defined(__x86_64__)
double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// 24 accumulators: more than FMA latency (4-5 cycles) x pipes (2) on current x86 cores. The
// multiplier and addend keep values finite and normal for any iteration count.
constexpr int kChains = 24;

__attribute__((target("avx512f,fma"))) float chains_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-6f);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 32  // all chains in registers: without it GCC keeps acc[] in memory
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  return out[0];
}

// VDPBF16PS: 32 multiply-adds per instruction (pairs of BF16 products into 16 float lanes). The
// BF16 operands 1.0 add 2 per step: values stay finite and normal for any iteration count.
__attribute__((target("avx512f,avx512bf16"))) float chains_avx512bf16(int64_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3f80);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 32
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], one, one);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  return out[0];
}

__attribute__((target("avx2,fma"))) float chains_avx2(int64_t iters) {
  __m256 acc[kChains / 2];  // 16 ymm registers: 12 chains
  for (int i = 0; i < kChains / 2; ++i) acc[i] = _mm256_set1_ps(float(i));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-6f);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 32
    for (int i = 0; i < kChains / 2; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  }
  __m256 s = acc[0];
  for (int i = 1; i < kChains / 2; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0];
}

// VPMADDWD + VPADDD chains: 12 accumulators, each with its own weights (so no two products are
// the same expression), the activations passed through an empty asm so that they are not
// constants; 32 multiply-adds per zmm pair, 16 per ymm.
constexpr int kDotChains = 12;

__attribute__((target("avx512f,avx512bw"))) int dot16_avx512(int64_t iters) {
  __m512i acc[kDotChains], w[kDotChains];
  for (int i = 0; i < kDotChains; ++i) acc[i] = _mm512_set1_epi32(i), w[i] = _mm512_set1_epi16(short(i + 1));
  __m512i x = _mm512_set1_epi16(3);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 16
    for (int i = 0; i < kDotChains; ++i) acc[i] = _mm512_add_epi32(acc[i], _mm512_madd_epi16(w[i], x));
    __asm__ volatile("" : "+v"(x));
  }
  __m512i s = acc[0];
  for (int i = 1; i < kDotChains; ++i) s = _mm512_add_epi32(s, acc[i]);
  return _mm512_reduce_add_epi32(s);
}

__attribute__((target("avx2"))) int dot16_avx2(int64_t iters) {
  __m256i acc[kDotChains], w[kDotChains];
  for (int i = 0; i < kDotChains; ++i) acc[i] = _mm256_set1_epi32(i), w[i] = _mm256_set1_epi16(short(i + 1));
  __m256i x = _mm256_set1_epi16(3);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 16
    for (int i = 0; i < kDotChains; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(w[i], x));
    __asm__ volatile("" : "+x"(x));
  }
  __m256i s = acc[0];
  for (int i = 1; i < kDotChains; ++i) s = _mm256_add_epi32(s, acc[i]);
  alignas(32) int out[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), s);
  return out[0];
}

// GFLOP/s per core of `one(iters)` doing `flops_per_iter` each, on `threads` threads at once.
template <class F>
double per_core(int threads, int64_t iters, double flops_per_iter, const F& one) {
  std::vector<double> rate(static_cast<size_t>(threads));
  std::vector<int> sink(static_cast<size_t>(threads));
  auto work = [&](int i) {
    const double t0 = thread_cpu_seconds();
    sink[size_t(i)] = int(one(iters));
    rate[size_t(i)] = double(iters) * flops_per_iter / (thread_cpu_seconds() - t0) * 1e-9;
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(work, i);
  work(0);
  for (auto& t : pool) t.join();
  double sum = 0;
  for (double r : rate) sum += r;
  volatile int keep = sink[0];
  (void)keep;
  return sum / threads;
}

#endif

}  // namespace

double int16_dot_peak_gflops_per_core(const std::string& isa, int threads, int64_t iters) {
#if !defined(__x86_64__)
  (void)isa, (void)threads, (void)iters;
  return 0;
#else
  if (isa == "avx512" || isa == "avx512bf16") return per_core(threads, iters, kDotChains * 32 * 2, dot16_avx512);
  if (isa == "avx2") return per_core(threads, iters, kDotChains * 16 * 2, dot16_avx2);
  return 0;
#endif
}

double fma_peak_gflops_per_core(const std::string& isa, int threads, int64_t iters) {
#if !defined(__x86_64__)
  (void)isa, (void)threads, (void)iters;
  return 0;
#else
  if (isa != "avx512" && isa != "avx2" && isa != "avx512bf16") return 0;
  std::vector<double> rate(static_cast<size_t>(threads));
  std::vector<float> sink(static_cast<size_t>(threads));
  auto work = [&](int i) {
    const double t0 = thread_cpu_seconds();
    double flops;
    if (isa == "avx512") {
      sink[size_t(i)] = chains_avx512(iters);
      flops = double(iters) * kChains * 16 * 2;
    } else if (isa == "avx512bf16") {
      sink[size_t(i)] = chains_avx512bf16(iters);
      flops = double(iters) * kChains * 32 * 2;
    } else {
      sink[size_t(i)] = chains_avx2(iters);
      flops = double(iters) * (kChains / 2) * 8 * 2;
    }
    rate[size_t(i)] = flops / (thread_cpu_seconds() - t0) * 1e-9;
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(work, i);
  work(0);
  for (auto& t : pool) t.join();
  double sum = 0;
  for (double r : rate) sum += r;
  volatile float keep = sink[0];
  (void)keep;
  return sum / threads;
#endif
}

}  // namespace dsv3
