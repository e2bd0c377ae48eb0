#include "train/ffn.h"

#include <atomic>
#include <cmath>

#include "model/moe.h"
#include "train/balance.h"

namespace dsv3::train {

namespace {
template <typename T>
T* P(const Matrix& m) {
  return static_cast<T*>(const_cast<void*>(m.data));
}
template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
// Runs fn(i) for i < n, spread over the pool with an atomic counter (uneven expert sizes). Each
// i runs entirely on one thread, so results do not depend on the thread count.
void dynamic_for(ThreadPool* pool, int64_t n, const std::function<void(int64_t)>& fn) {
  if (!pool || pool->size() == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  pool->run([&](int, int) {
    for (int64_t i = next++; i < n; i = next++) fn(i);
  });
}
}  // namespace

template <typename T>
void mlp_train_forward(const Exec& e, const MLPWeights& w, const T* x, int64_t m, T* y, MLPAct<T>& a) {
  const int64_t inter = w.w1.rows, dim = w.w1.cols;
  a.g.resize(size_t(m * inter));
  a.u.resize(size_t(m * inter));
  a.a.resize(size_t(m * inter));
  linear_fwd(e, P<T>(w.w1), inter, dim, x, m, a.g.data());
  linear_fwd(e, P<T>(w.w3), inter, dim, x, m, a.u.data());
  for (int64_t i = 0; i < m * inter; ++i) a.a[size_t(i)] = a.g[size_t(i)] * sigmoid(a.g[size_t(i)]) * a.u[size_t(i)];
  linear_fwd(e, P<T>(w.w2), dim, inter, a.a.data(), m, y);
}

template <typename T>
void mlp_train_backward(const Exec& e, const MLPWeights& w, const MLPWeights& g, const T* x, int64_t m, const T* dy,
                        T* dx, bool accumulate, MLPAct<T>& a) {
  const int64_t inter = w.w1.rows, dim = w.w1.cols;
  std::vector<T> da(size_t(m * inter));
  linear_bwd(e, P<T>(w.w2), P<T>(g.w2), dim, inter, a.a.data(), dy, m, da.data(), false);
  // a = silu(g) u: du = da silu(g); dg = da u silu'(g), silu'(g) = s (1 + g (1 - s)).
  std::vector<T>& dg = a.a;  // a.a is no longer needed: reuse it for dg, and a.g's slot for du
  for (int64_t i = 0; i < m * inter; ++i) {
    const T gv = a.g[size_t(i)], s = sigmoid(gv), d = da[size_t(i)];
    dg[size_t(i)] = d * a.u[size_t(i)] * s * (T(1) + gv * (T(1) - s));
    a.g[size_t(i)] = d * gv * s;  // du
  }
  linear_bwd(e, P<T>(w.w1), P<T>(g.w1), inter, dim, x, dg.data(), m, dx, accumulate);
  linear_bwd(e, P<T>(w.w3), P<T>(g.w3), inter, dim, x, a.g.data(), m, dx, true);
}

template <typename T>
void moe_train_forward(const Exec& e, const ModelConfig& c, const MoEWeights& w, const T* x, int64_t B, int64_t Tn,
                       T* out, MoEAct<T>& a, double alpha, double* balance_loss) {
  const int64_t n = B * Tn, dim = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
  std::vector<T> logits(size_t(n * E));
  linear_fwd(e, P<T>(w.gate), E, dim, x, n, logits.data(), /*quantizable=*/false);
  std::vector<float> bias, lf(static_cast<size_t>(E));
  if (w.gate_bias.data) bias.assign(P<T>(w.gate_bias), P<T>(w.gate_bias) + E);
  a.scores.resize(size_t(n * E));
  a.experts.resize(size_t(n * K));
  a.weights.resize(size_t(n * K));
  a.slot.resize(size_t(n * K));
  a.rows.assign(size_t(E), {});
  a.load.assign(size_t(E), 0);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < E; ++j) {
      a.scores[size_t(t * E + j)] = sigmoid(logits[size_t(t * E + j)]);
      lf[size_t(j)] = float(logits[size_t(t * E + j)]);
    }
    const Routing r = route(c, lf.data(), bias.empty() ? nullptr : bias.data());
    T sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += a.scores[size_t(t * E + r.experts[size_t(k)])];
    for (int64_t k = 0; k < K; ++k) {
      const int32_t ex = r.experts[size_t(k)];
      T wt = a.scores[size_t(t * E + ex)];
      if (c.norm_topk_prob) wt /= sum;
      a.weights[size_t(t * K + k)] = wt * T(c.routed_scaling_factor);
      a.experts[size_t(t * K + k)] = ex;
      a.slot[size_t(t * K + k)] = int64_t(a.rows[size_t(ex)].size());
      a.rows[size_t(ex)].push_back(t);
      ++a.load[size_t(ex)];
    }
  }
  if (alpha > 0)
    for (int64_t b = 0; b < B; ++b)
      *balance_loss += sequence_balance_loss<T>(&a.scores[size_t(b * Tn * E)], &a.experts[size_t(b * Tn * K)], Tn, E,
                                                K, alpha, 0, nullptr) /
                       double(B);

  a.xin.resize(static_cast<size_t>(E));
  a.yout.resize(static_cast<size_t>(E));
  a.expert_act.resize(static_cast<size_t>(E));
  dynamic_for(e.pool, E, [&](int64_t ex) {
    const auto& rows = a.rows[size_t(ex)];
    const int64_t m = int64_t(rows.size());
    auto& xin = a.xin[size_t(ex)];
    xin.resize(size_t(m * dim));
    a.yout[size_t(ex)].resize(size_t(m * dim));
    for (int64_t i = 0; i < m; ++i) std::copy(x + rows[size_t(i)] * dim, x + (rows[size_t(i)] + 1) * dim, &xin[size_t(i * dim)]);
    if (m > 0)
      mlp_train_forward(e.serial(), w.experts[size_t(ex)], xin.data(), m, a.yout[size_t(ex)].data(),
                        a.expert_act[size_t(ex)]);
  });
  if (w.shared.w1.data) {
    a.shared_out.resize(size_t(n * dim));
    mlp_train_forward(e, w.shared, x, n, a.shared_out.data(), a.shared_act);
    std::copy(a.shared_out.begin(), a.shared_out.end(), out);
  } else {
    std::fill(out, out + n * dim, T(0));
  }
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = 0; k < K; ++k) {
      const T wt = a.weights[size_t(t * K + k)];
      const T* y = &a.yout[size_t(a.experts[size_t(t * K + k)])][size_t(a.slot[size_t(t * K + k)] * dim)];
      for (int64_t d = 0; d < dim; ++d) out[t * dim + d] += wt * y[d];
    }
}

template <typename T>
void moe_train_backward(const Exec& e, const ModelConfig& c, const MoEWeights& w, const MoEWeights& g, const T* x,
                        int64_t B, int64_t Tn, const T* dy, T* dx, MoEAct<T>& a, double alpha, double loss_scale) {
  const int64_t n = B * Tn, dim = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
  if (w.shared.w1.data) mlp_train_backward(e, w.shared, g.shared, x, n, dy, dx, true, a.shared_act);

  // Gating values: d g_{t,k} = dy[t] . expert output.
  std::vector<T> dw(size_t(n * K));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = 0; k < K; ++k) {
      const T* y = &a.yout[size_t(a.experts[size_t(t * K + k)])][size_t(a.slot[size_t(t * K + k)] * dim)];
      T acc = 0;
      for (int64_t d = 0; d < dim; ++d) acc += dy[t * dim + d] * y[d];
      dw[size_t(t * K + k)] = acc;
    }

  // Experts, each on one thread: input gradients land in per-expert rows, summed below in k order.
  std::vector<std::vector<T>> dxin(static_cast<size_t>(E));
  std::vector<std::vector<T>> wts(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = 0; k < K; ++k) wts[size_t(a.experts[size_t(t * K + k)])].push_back(a.weights[size_t(t * K + k)]);
  dynamic_for(e.pool, E, [&](int64_t ex) {
    const auto& rows = a.rows[size_t(ex)];
    const int64_t m = int64_t(rows.size());
    if (m == 0) return;
    std::vector<T> dyin(size_t(m * dim));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t d = 0; d < dim; ++d) dyin[size_t(i * dim + d)] = wts[size_t(ex)][size_t(i)] * dy[rows[size_t(i)] * dim + d];
    dxin[size_t(ex)].resize(size_t(m * dim));
    mlp_train_backward(e.serial(), w.experts[size_t(ex)], g.experts[size_t(ex)], a.xin[size_t(ex)].data(), m,
                       dyin.data(), dxin[size_t(ex)].data(), false, a.expert_act[size_t(ex)]);
  });
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = 0; k < K; ++k) {
      const T* s = &dxin[size_t(a.experts[size_t(t * K + k)])][size_t(a.slot[size_t(t * K + k)] * dim)];
      for (int64_t d = 0; d < dim; ++d) dx[t * dim + d] += s[d];
    }

  // Affinities: g_k = rsf s_k / S (S = sum of the selected s) or rsf s_k.
  const T rsf = T(c.routed_scaling_factor);
  std::vector<T> ds(size_t(n * E), T(0));
  for (int64_t t = 0; t < n; ++t) {
    const int32_t* ex = &a.experts[size_t(t * K)];
    if (c.norm_topk_prob) {
      T S = 0, dot = 0;
      for (int64_t k = 0; k < K; ++k) {
        const T s = a.scores[size_t(t * E + ex[k])];
        S += s;
        dot += dw[size_t(t * K + k)] * s;
      }
      for (int64_t k = 0; k < K; ++k) ds[size_t(t * E + ex[k])] += rsf * (dw[size_t(t * K + k)] / S - dot / (S * S));
    } else {
      for (int64_t k = 0; k < K; ++k) ds[size_t(t * E + ex[k])] += rsf * dw[size_t(t * K + k)];
    }
  }
  if (alpha > 0)
    for (int64_t b = 0; b < B; ++b)
      sequence_balance_loss<T>(&a.scores[size_t(b * Tn * E)], &a.experts[size_t(b * Tn * K)], Tn, E, K, alpha,
                               loss_scale / double(B), &ds[size_t(b * Tn * E)]);
  for (int64_t i = 0; i < n * E; ++i) ds[size_t(i)] *= a.scores[size_t(i)] * (T(1) - a.scores[size_t(i)]);
  linear_bwd(e, P<T>(w.gate), P<T>(g.gate), E, dim, x, ds.data(), n, dx, true, /*quantizable=*/false);
}

#define DSV3_INSTANTIATE(T)                                                                                        \
  template void mlp_train_forward<T>(const Exec&, const MLPWeights&, const T*, int64_t, T*, MLPAct<T>&);           \
  template void mlp_train_backward<T>(const Exec&, const MLPWeights&, const MLPWeights&, const T*, int64_t,        \
                                      const T*, T*, bool, MLPAct<T>&);                                             \
  template void moe_train_forward<T>(const Exec&, const ModelConfig&, const MoEWeights&, const T*, int64_t,        \
                                     int64_t, T*, MoEAct<T>&, double, double*);                                    \
  template void moe_train_backward<T>(const Exec&, const ModelConfig&, const MoEWeights&, const MoEWeights&,       \
                                      const T*, int64_t, int64_t, const T*, T*, MoEAct<T>&, double, double);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3::train
