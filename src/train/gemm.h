// Matrix products of the trainer: the three GEMMs of every linear layer (forward y = x W^T,
// input gradient dx = dy W, weight gradient dW += dy^T x), row-major, F32 accumulation.
// Every output element is reduced over k in the same fixed order whatever the thread count,
// so training results do not depend on how many threads run it.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace dsv3::train {

// C[M,N] = (accumulate ? C : 0) + A[M,K] B[K,N].
template <typename T>
void gemm_nn(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool accumulate, ThreadPool* pool);
// C[M,N] = (accumulate ? C : 0) + A[M,K] B[N,K]^T   (forward of a linear: B is the weight [out, in]).
template <typename T>
void gemm_nt(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool accumulate, ThreadPool* pool);
// C[M,N] = (accumulate ? C : 0) + A[K,M]^T B[K,N]   (weight gradient: A is dy [tokens, out]).
template <typename T>
void gemm_tn(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, bool accumulate, ThreadPool* pool);

// Peak F32 FMA throughput of this machine in GFLOP/s (2 flops per FMA lane), measured with
// independent register-resident FMA chains on `threads` threads for about `seconds`.
double measure_fma_peak_gflops(int threads, double seconds);

}  // namespace dsv3::train
