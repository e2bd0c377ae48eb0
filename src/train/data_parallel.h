// Data-parallel training over the collectives (core/collectives.h), arranged so that N ranks
// compute the single process's bits: a step's micro-batches are dealt out round-robin (micro-batch
// m runs on rank m % N) and their gradients are folded in micro-batch order by ordered sums.
// docs/training.md, "Data-parallel training".
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/collectives.h"
#include "train/model.h"

namespace dsv3::train {

// Runs `setup` on every rank. When it throws on one or more ranks, every rank throws a JobError
// with the message of the lowest failing rank (prefixed "rank R: "), so an error that only rank
// 0 can see (its run folder, its checkpoint) ends every rank with one clear line. One process:
// calls setup and lets its exception through unchanged.
void run_agreed(Collectives& c, const std::function<void()>& setup);

// Throws a JobError unless every rank passed the same `value` (the settings' hash: ranks started
// with other flags would run other collectives and hang). `what` names the value.
void check_same_on_all_ranks(Collectives& c, uint64_t value, const char* what);

// Copies root's `v` to every rank (resized there), in pieces an MPI count can hold.
template <typename T>
void broadcast_vector(Collectives& c, std::vector<T>& v, int root = 0);

// True on every rank when `flag` is true on any rank.
bool any_rank(Collectives& c, bool flag);

// The gradient of one optimizer step, summed as the single process sums it: each micro-batch's
// gradient g_m is computed into a zeroed buffer and added left to right into a running sum that
// starts at +0,   G = ((0 + g_0) + g_1) + ... + g_{A-1}.
// With N ranks, round r holds g_{rN} .. g_{rN+N-1} on ranks 0 .. N-1: rank 0 adds its g to the
// running sum and the ordered sum then adds the other ranks' in rank order, which are the same
// additions in the same order. A rank without a micro-batch in the last round contributes +0,
// which leaves the running sum unchanged (it is never -0, since it starts at +0).
class GradientFold {
 public:
  explicit GradientFold(Collectives& c) : c_(c) {}
  // grad: this rank's gradient of its micro-batch of round `round` (all zeros when it had none).
  // On return it holds the running sum over rounds 0..round, on every rank. `last`: no further
  // round follows in this step.
  void add(std::span<float> grad, int64_t round, bool last);

 private:
  Collectives& c_;
  std::vector<float> acc_;  // rank 0: the running sum between rounds
};

// What every rank needs of one micro-batch besides its gradient: losses and expert loads.
struct MicroResult {
  LossParts loss;
  std::vector<int64_t> loads;  // [MoE layer][expert], flattened; zeros for a rank without one
};

// Every rank's MicroResult of one round, in rank order, on every rank. `n_loads`: loads.size().
std::vector<MicroResult> exchange(Collectives& c, const MicroResult& mine, size_t n_loads);

}  // namespace dsv3::train
