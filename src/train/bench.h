// `dsv3 train-bench`: the machine's F32 FMA peak and the trainer's GEMM throughput on the
// default model's shapes, for docs/training.md's "share of peak".
#pragma once

namespace dsv3::train {

// Prints the measurements to stdout; returns 0.
int run_bench(int threads);

}  // namespace dsv3::train
