// Expert load balancing of DeepSeek-V3 (report section 2.1.2): the auxiliary-loss-free bias
// update, the sequence-wise balance loss, and the MaxVio load statistic.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3::train {

enum class Balance {
  AuxFree,  // bias update (+ complementary sequence-wise loss when alpha > 0)
  AuxLoss,  // classic: balance loss only, no bias
  None,
};
Balance parse_balance(const std::string& s);  // "aux-free", "aux-loss", "none"; throws otherwise
const char* balance_name(Balance b);

// After a step: each expert's bias moves by +gamma when its load is below the mean load and by
// -gamma when above (unchanged when equal). load[e]: tokens routed to e in the step.
void update_balance_bias(const std::vector<int64_t>& load, double gamma, float* bias);

// max_e load[e] / mean(load) - 1; 0 when nothing was routed.
double max_violation(const std::vector<int64_t>& load);

// Sequence-wise balance loss of one sequence of Tn tokens (equations 17-20):
//   f_i = E / (K Tn) * #{t : i in topk(t)},  s'_{i,t} = s_{i,t} / sum_j s_{j,t},
//   P_i = 1/Tn sum_t s'_{i,t},                 L = alpha sum_i f_i P_i.
// scores [Tn, E] (sigmoid affinities), selected [Tn, K]. Returns L; when dscores is non-null,
// adds scale * dL/dscores to it ([Tn, E]; f is treated as a constant, as in the report).
template <typename T>
double sequence_balance_loss(const T* scores, const int32_t* selected, int64_t Tn, int64_t E, int64_t K, double alpha,
                             double scale, T* dscores);

}  // namespace dsv3::train
