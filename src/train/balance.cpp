#include "train/balance.h"

#include <algorithm>

#include "core/error.h"

namespace dsv3::train {

Balance parse_balance(const std::string& s) {
  if (s == "aux-free") return Balance::AuxFree;
  if (s == "aux-loss") return Balance::AuxLoss;
  if (s == "none") return Balance::None;
  fail("unknown --balance '", s, "' (aux-free, aux-loss, none)");
}

const char* balance_name(Balance b) {
  switch (b) {
    case Balance::AuxFree: return "aux-free";
    case Balance::AuxLoss: return "aux-loss";
    default: return "none";
  }
}

void update_balance_bias(const std::vector<int64_t>& load, double gamma, float* bias) {
  int64_t total = 0;
  for (int64_t l : load) total += l;
  const double mean = double(total) / double(load.size());
  for (size_t e = 0; e < load.size(); ++e) {
    if (double(load[e]) < mean) bias[e] += float(gamma);
    if (double(load[e]) > mean) bias[e] -= float(gamma);
  }
}

double max_violation(const std::vector<int64_t>& load) {
  int64_t total = 0, mx = 0;
  for (int64_t l : load) {
    total += l;
    mx = std::max(mx, l);
  }
  if (total == 0) return 0;
  return double(mx) / (double(total) / double(load.size())) - 1.0;
}

template <typename T>
double sequence_balance_loss(const T* scores, const int32_t* selected, int64_t Tn, int64_t E, int64_t K, double alpha,
                             double scale, T* dscores) {
  std::vector<double> f(size_t(E), 0.0), P(size_t(E), 0.0);
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t k = 0; k < K; ++k) f[size_t(selected[t * K + k])] += 1.0;
  for (double& v : f) v *= double(E) / double(K * Tn);
  std::vector<double> sums(static_cast<size_t>(Tn));
  for (int64_t t = 0; t < Tn; ++t) {
    double s = 0;
    for (int64_t e = 0; e < E; ++e) s += double(scores[t * E + e]);
    sums[size_t(t)] = s;
    for (int64_t e = 0; e < E; ++e) P[size_t(e)] += double(scores[t * E + e]) / s / double(Tn);
  }
  double L = 0;
  for (int64_t e = 0; e < E; ++e) L += f[size_t(e)] * P[size_t(e)];
  L *= alpha;
  if (dscores) {
    // g_i = dL/ds'_{i,t} = alpha f_i / Tn; ds_j = (g_j - sum_i g_i s'_i) / S.
    for (int64_t t = 0; t < Tn; ++t) {
      const double S = sums[size_t(t)];
      double gs = 0;
      for (int64_t e = 0; e < E; ++e) gs += alpha * f[size_t(e)] / double(Tn) * double(scores[t * E + e]) / S;
      for (int64_t e = 0; e < E; ++e)
        dscores[t * E + e] += T(scale * (alpha * f[size_t(e)] / double(Tn) - gs) / S);
    }
  }
  return L;
}

template double sequence_balance_loss<float>(const float*, const int32_t*, int64_t, int64_t, int64_t, double, double,
                                             float*);
template double sequence_balance_loss<double>(const double*, const int32_t*, int64_t, int64_t, int64_t, double,
                                              double, double*);

}  // namespace dsv3::train
