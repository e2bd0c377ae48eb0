// Feed-forward parts for training, forward and backward: the dense SwiGLU MLP and DeepSeekMoE
// (report section 2.1.2) with sigmoid affinities, bias-adjusted group-limited top-k selection
// (model/moe.h's route, so training routes exactly as inference) and gradients into the gate
// through the affinities of the selected experts and the sequence-wise balance loss.
#pragma once
#include <cstdint>
#include <vector>

#include "io/config.h"
#include "model/weights.h"
#include "train/linear.h"

namespace dsv3::train {

template <typename T>
struct MLPAct {
  std::vector<T> g, u, a;  // [m, inter]: w1 x, w3 x, silu(g) * u
};

// y[m, dim] = w2(silu(w1 x) * w3 x).
template <typename T>
void mlp_train_forward(const Exec& e, const MLPWeights& w, const T* x, int64_t m, T* y, MLPAct<T>& a);
// dx (+)= dy through the MLP (accumulates when `accumulate`); weight gradients into g.
template <typename T>
void mlp_train_backward(const Exec& e, const MLPWeights& w, const MLPWeights& g, const T* x, int64_t m, const T* dy,
                        T* dx, bool accumulate, MLPAct<T>& a);

template <typename T>
struct MoEAct {
  std::vector<T> scores;                      // [n, E] sigmoid affinities
  std::vector<int32_t> experts;               // [n, K] selected experts, in top-k order
  std::vector<T> weights;                     // [n, K] gating values g_{i,t}
  std::vector<int64_t> slot;                  // [n, K] row of (t, k) within its expert's batch
  std::vector<std::vector<int64_t>> rows;     // [E][m_e] token index t of each expert row
  std::vector<std::vector<T>> xin, yout;      // [E][m_e, dim] gathered inputs and expert outputs
  std::vector<MLPAct<T>> expert_act;          // [E]
  MLPAct<T> shared_act;
  std::vector<T> shared_out;                  // [n, dim]
  std::vector<int64_t> load;                  // [E] tokens routed to each expert by this call
};

// out[n, dim] for B sequences of Tn tokens. alpha > 0 adds the sequence-wise balance loss,
// averaged over the B sequences, to *balance_loss.
template <typename T>
void moe_train_forward(const Exec& e, const ModelConfig& c, const MoEWeights& w, const T* x, int64_t B, int64_t Tn,
                       T* out, MoEAct<T>& a, double alpha, double* balance_loss);
// dx += dy through the MoE (and loss_scale * the balance loss's gradient).
template <typename T>
void moe_train_backward(const Exec& e, const ModelConfig& c, const MoEWeights& w, const MoEWeights& g, const T* x,
                        int64_t B, int64_t Tn, const T* dy, T* dx, MoEAct<T>& a, double alpha, double loss_scale);

}  // namespace dsv3::train
