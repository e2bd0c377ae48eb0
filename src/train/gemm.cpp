#include "train/gemm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

namespace dsv3::train {

namespace {

// Register blocking of the F32 micro-kernel: MR rows x NR columns of C stay in 2*MR vector
// registers of 16 lanes (12 of AVX-512's 32 zmm; under AVX2 each splits into two ymm, 24 of
// 16 ... the compiler spills a little, still FMA-bound). KC keeps a packed B panel (KC x NR
// floats = 32 KiB) in L1/L2; MB rows of A are reused across the panel.
constexpr int64_t kMR = 6, kNR = 32, kKC = 256, kMB = 96;

typedef float v16 __attribute__((vector_size(64)));

inline v16 load16(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

// A's element (i, k) is A[i * rs + k * cs]: rs = K, cs = 1 for A [M, K]; rs = 1, cs = M for
// A stored transposed ([K, M], the weight-gradient GEMM), which then needs no transposition.
template <int MR>
[[gnu::always_inline]] inline void micro(const float* A, int64_t rs, int64_t cs, const float* Bp, int64_t kc, float* C,
                                         int64_t ldc, int64_t nr) {
  v16 acc[MR][2] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const v16 b0 = load16(Bp + k * kNR), b1 = load16(Bp + k * kNR + 16);
    for (int i = 0; i < MR; ++i) {
      const float a = A[i * rs + k * cs];
      acc[i][0] += a * b0;
      acc[i][1] += a * b1;
    }
  }
  if (nr == kNR) {
    for (int i = 0; i < MR; ++i) {
      store16(C + i * ldc, load16(C + i * ldc) + acc[i][0]);
      store16(C + i * ldc + 16, load16(C + i * ldc + 16) + acc[i][1]);
    }
  } else {
    for (int i = 0; i < MR; ++i) {
      float t[kNR];
      store16(t, acc[i][0]);
      store16(t + 16, acc[i][1]);
      for (int64_t j = 0; j < nr; ++j) C[i * ldc + j] += t[j];
    }
  }
}

// One tile of C: rows [0, m) x columns [0, n), n <= kNR. `pack` holds kKC * kNR floats.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void gemm_tile(float* C, const float* A, int64_t rs, int64_t cs, const float* B, int64_t ldc, int64_t ldb, int64_t m,
               int64_t n, int64_t K, bool accumulate, float* pack) {
  if (!accumulate)
    for (int64_t i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, 0.0f);
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (k0 + k) * ldb;
      float* dst = pack + k * kNR;
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      std::fill(dst + n, dst + kNR, 0.0f);
    }
    for (int64_t i = 0; i < m; i += kMR) {
      const float* a = A + i * rs + k0 * cs;
      float* c = C + i * ldc;
      switch (std::min(kMR, m - i)) {
        case 6: micro<6>(a, rs, cs, pack, kc, c, ldc, n); break;
        case 5: micro<5>(a, rs, cs, pack, kc, c, ldc, n); break;
        case 4: micro<4>(a, rs, cs, pack, kc, c, ldc, n); break;
        case 3: micro<3>(a, rs, cs, pack, kc, c, ldc, n); break;
        case 2: micro<2>(a, rs, cs, pack, kc, c, ldc, n); break;
        default: micro<1>(a, rs, cs, pack, kc, c, ldc, n); break;
      }
    }
  }
}

// C[M, N] (+)= A B with A's element (i, k) at A[i * rs + k * cs] and B [K, N].
void gemm_f32(float* C, const float* A, int64_t rs, int64_t cs, const float* B, int64_t M, int64_t N, int64_t K,
              bool accumulate, ThreadPool* pool) {
  if (M == 0 || N == 0) return;
  const int64_t row_blocks = (M + kMB - 1) / kMB, col_blocks = (N + kNR - 1) / kNR;
  const int64_t tiles = row_blocks * col_blocks;
  auto work = [&](int ith, int nth) {
    thread_local std::vector<float> pack;
    pack.resize(size_t(kKC * kNR));
    for (int64_t t = ith; t < tiles; t += nth) {
      const int64_t rb = t / col_blocks, cb = t % col_blocks;
      const int64_t i0 = rb * kMB, j0 = cb * kNR;
      gemm_tile(C + i0 * N + j0, A + i0 * rs, rs, cs, B + j0, N, N, std::min(kMB, M - i0), std::min(kNR, N - j0), K,
                accumulate, pack.data());
    }
  };
  if (pool && pool->size() > 1 && tiles > 1 && M * N * K > (1 << 16))
    pool->run(work);
  else
    work(0, 1);
}

// Reference product for double precision (gradient checks): plain loops, rows in parallel.
void gemm_nn_f64(double* C, const double* A, const double* B, int64_t M, int64_t N, int64_t K, bool accumulate,
                 ThreadPool* pool) {
  auto rows = [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      double* c = C + i * N;
      if (!accumulate) std::fill(c, c + N, 0.0);
      for (int64_t k = 0; k < K; ++k) {
        const double a = A[i * K + k];
        const double* b = B + k * N;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      }
    }
  };
  if (pool)
    pool->parallel_for(M, rows);
  else
    rows(0, M);
}

template <typename T>
void transpose(const T* src, int64_t rows, int64_t cols, T* dst) {  // dst[cols, rows]
  constexpr int64_t kB = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kB)
    for (int64_t c0 = 0; c0 < cols; c0 += kB)
      for (int64_t r = r0; r < std::min(rows, r0 + kB); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kB); ++c) dst[c * rows + r] = src[r * cols + c];
}

template <typename T>
std::vector<T>& scratch() {
  thread_local std::vector<T> s;
  return s;
}

}  // namespace

template <typename T>
void gemm_nn(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool accumulate, ThreadPool* pool) {
  if constexpr (std::is_same_v<T, float>)
    gemm_f32(C, A, K, 1, B, M, N, K, accumulate, pool);
  else
    gemm_nn_f64(C, A, B, M, N, K, accumulate, pool);
}

template <typename T>
void gemm_nt(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool accumulate, ThreadPool* pool) {
  std::vector<T>& bt = scratch<T>();
  bt.resize(size_t(N * K));
  transpose(B, N, K, bt.data());
  gemm_nn(C, A, bt.data(), M, N, K, accumulate, pool);
}

template <typename T>
void gemm_tn(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool accumulate, ThreadPool* pool) {
  if constexpr (std::is_same_v<T, float>) {
    gemm_f32(C, A, 1, M, B, M, N, K, accumulate, pool);
    return;
  }
  std::vector<T>& at = scratch<T>();
  at.resize(size_t(M * K));
  transpose(A, K, M, at.data());
  gemm_nn(C, at.data(), B, M, N, K, accumulate, pool);
}

template void gemm_nn<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, ThreadPool*);
template void gemm_nn<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, bool, ThreadPool*);
template void gemm_nt<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, ThreadPool*);
template void gemm_nt<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, bool, ThreadPool*);
template void gemm_tn<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, ThreadPool*);
template void gemm_tn<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, bool, ThreadPool*);

namespace {
// 12 independent accumulators of 16 lanes: enough chains to cover FMA latency x throughput
// (4 cycles x 2 pipes = 8 in flight) on current x86 cores.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
float fma_chains(int64_t iters, float seed) {
  v16 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = (v16){} + seed * float(i + 1);
  const v16 a = (v16){} + 0.999999f, b = (v16){} + 1e-7f;
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * a + b;
  float s = 0;
  for (int i = 0; i < 12; ++i) s += acc[i][0];
  return s;
}
}  // namespace

double measure_fma_peak_gflops(int threads, double seconds) {
  ThreadPool pool(threads);
  const int64_t iters = 1 << 20;
  fma_chains(iters / 16, 1.0f);  // warm up (clock ramp)
  std::atomic<int64_t> rounds{0};
  std::atomic<float> sink{0};
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  int64_t total_rounds = 0;
  while (elapsed < seconds) {
    pool.run([&](int ith, int) {
      sink = sink + fma_chains(iters, float(ith + 1));
      rounds.fetch_add(1);
    });
    total_rounds = rounds.load();
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return double(total_rounds) * double(iters) * 12 * 16 * 2 / elapsed / 1e9;
}

}  // namespace dsv3::train
