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

}  // namespace dsv3
