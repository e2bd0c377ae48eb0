// Measurements for `dsv3 bench`: model throughput next to the machine's limits, so numbers
// read as a share of a physical bound rather than bare tokens/s.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "io/config.h"
#include "model/weights.h"

namespace dsv3 {

// Read bandwidth in bytes/s: all threads sum disjoint parts of a `bytes` buffer (larger than
// the caches), best of `reps` passes. The reference for memory-bound decode.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int reps = 3);

// Bytes of weights one decode token reads: everything but the routed experts, plus
// num_experts_per_tok average routed experts per MoE layer, plus one embedding row.
double decode_weight_bytes_per_token(const ModelConfig& c, const ModelWeights& w);

}  // namespace dsv3
