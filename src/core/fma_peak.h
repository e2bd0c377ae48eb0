// FMA throughput ceiling of this machine (fma_peak.cpp): the bound GEMM and prefill figures
// are quoted against (kernels bench, `dsv3 bench`).
#pragma once
#include <cstdint>
#include <string>

namespace dsv3 {

// GFLOP/s of one core running `threads` threads at once ("avx512": zmm FMAs, "avx2": ymm,
// "avx512bf16": zmm VDPBF16PS, the BF16 dot products that variant's linears run on),
// averaged over the threads, per second of each thread's CPU time. The CPU must support isa;
// on other architectures (or another isa name) it returns 0.
double fma_peak_gflops_per_core(const std::string& isa, int threads, int64_t iters);

// The same for the int16 dot products the ggml block formats' kernels run (kernels/simd/qblocks.h,
// kernels/simd/qgemm.h): VPMADDWD + VPADDD on zmm ("avx512", "avx512bf16") or ymm ("avx2"),
// two FLOPs per 16-bit multiply-add. 0 where `isa` has no such kernels.
double int16_dot_peak_gflops_per_core(const std::string& isa, int threads, int64_t iters);

}  // namespace dsv3
