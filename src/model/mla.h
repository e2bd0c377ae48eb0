// Multi-head Latent Attention (DeepSeek-V2/V3 report, section 2.1.1; model.py class MLA).
#pragma once
#include <cstdint>
#include <span>

#include "core/thread_pool.h"
#include "io/config.h"
#include "model/kv_cache.h"
#include "model/rope.h"
#include "model/weights.h"

namespace dsv3 {

// Runs attention for n tokens: x is the normed input [n, dim], out receives [n, dim]. Row i
// writes its c_kv and k_pe into slots[i].cache (layer `layer`) at slots[i].pos, then attends
// causally over positions [0, slots[i].pos] of that cache (so rows of one sequence in the same
// batch see each other, rows of different sequences never do).
//
// Two forms of the same math (model.py attn_impl "absorb" and "naive"), chosen per call by
// operation count unless `form` forces one: absorb folds kv_b_proj's key part into the query
// (q_abs[h] = q_nope[h] W_uk[h]; scores = q_abs . c_kv + q_pe . k_pe) and applies its value part
// after attention, reading only the latent cache (decode); expanded recomputes k_nope and v from
// c_kv for the whole window (long prefill).
// With a rank's share of the heads (model/partition.h), `out` is their partial sum through
// their columns of wo, to be summed over ranks; the cache rows are the same on every rank.
enum class MLAForm { Auto, Absorb, Expanded };

void mla_forward(const ModelConfig& c, const MLAWeights& w, const Rope& rope, int64_t layer, const float* x, int64_t n,
                 std::span<const TokenSlot> slots, float* out, ThreadPool& pool, MLAForm form = MLAForm::Auto);

}  // namespace dsv3
