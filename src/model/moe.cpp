#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "kernels/ops.h"

namespace dsv3 {

void mlp_forward(const MLPWeights& w, const float* x, int64_t n, float* out, ThreadPool& pool) {
  const int64_t inter = w.w1.rows;
  std::vector<float> gate(static_cast<size_t>(n * inter)), up(static_cast<size_t>(n * inter));
  kernels::linear(w.w1, x, gate.data(), n, pool);
  kernels::linear(w.w3, x, up.data(), n, pool);
  kernels::silu_mul(gate.data(), up.data(), gate.data(), n * inter);
  kernels::linear(w.w2, gate.data(), out, n, pool);
}

namespace {
// Indices of the k largest values, largest first; ties go to the lower index (torch.topk on
// CPU leaves them unspecified; this choice is at least deterministic).
std::vector<int32_t> topk(const std::vector<float>& v, int64_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return v[size_t(a)] > v[size_t(b)] || (v[size_t(a)] == v[size_t(b)] && a < b);
  });
  idx.resize(size_t(k));
  return idx;
}
}  // namespace

Routing route(const ModelConfig& c, const float* logits, const float* bias) {
  const int64_t n_exp = c.n_routed_experts;
  std::vector<float> scores(static_cast<size_t>(n_exp));
  if (c.scoring_func == "sigmoid") {
    for (int64_t e = 0; e < n_exp; ++e) scores[size_t(e)] = 1.0f / (1.0f + std::exp(-logits[e]));
  } else {
    std::copy(logits, logits + n_exp, scores.begin());
    kernels::softmax(scores.data(), n_exp);
  }
  std::vector<float> sel = scores;  // selection scores: biased when a bias exists
  if (bias)
    for (int64_t e = 0; e < n_exp; ++e) sel[size_t(e)] += bias[e];

  if (c.group_limited()) {
    const int64_t per_group = n_exp / c.n_group;
    std::vector<float> group_score(static_cast<size_t>(c.n_group));
    for (int64_t g = 0; g < c.n_group; ++g) {
      std::vector<float> grp(sel.begin() + g * per_group, sel.begin() + (g + 1) * per_group);
      if (bias) {
        auto top2 = topk(grp, 2);
        group_score[size_t(g)] = grp[size_t(top2[0])] + grp[size_t(top2[1])];
      } else {
        group_score[size_t(g)] = *std::max_element(grp.begin(), grp.end());
      }
    }
    const auto keep = topk(group_score, c.topk_group);
    std::vector<bool> kept(size_t(c.n_group), false);
    for (int32_t g : keep) kept[size_t(g)] = true;
    for (int64_t e = 0; e < n_exp; ++e)
      if (!kept[size_t(e / per_group)]) sel[size_t(e)] = -std::numeric_limits<float>::infinity();
  }

  Routing r;
  r.experts = topk(sel, c.num_experts_per_tok);
  float sum = 0.0f;
  for (int32_t e : r.experts) {
    r.weights.push_back(scores[size_t(e)]);
    sum += scores[size_t(e)];
  }
  for (float& wt : r.weights) {
    if (c.norm_topk_prob) wt /= sum;
    wt *= float(c.routed_scaling_factor);
  }
  return r;
}

void moe_forward(const ModelConfig& c, const MoEWeights& w, const float* x, int64_t n, float* out, ThreadPool& pool,
                 std::vector<Routing>* routing_out) {
  const int64_t dim = c.hidden_size, n_exp = c.n_routed_experts;
  std::vector<float> logits(static_cast<size_t>(n * n_exp));
  kernels::linear(w.gate, x, logits.data(), n, pool);
  std::vector<float> bias;
  if (w.gate_bias.data) {
    bias.resize(size_t(n_exp));
    kernels::dequant_row(w.gate_bias, 0, bias.data());
  }

  // Group tokens by expert: for each expert, the tokens that chose it and their weights.
  std::vector<std::vector<std::pair<int64_t, float>>> by_expert(static_cast<size_t>(n_exp));
  if (routing_out) routing_out->clear();
  for (int64_t t = 0; t < n; ++t) {
    Routing r = route(c, &logits[size_t(t * n_exp)], bias.empty() ? nullptr : bias.data());
    for (size_t k = 0; k < r.experts.size(); ++k) by_expert[size_t(r.experts[k])].push_back({t, r.weights[k]});
    if (routing_out) routing_out->push_back(std::move(r));
  }

  // Routed experts summed in expert order (as model.py's loop), then the shared experts.
  std::vector<float> y(size_t(n * dim), 0.0f), xin, yout;
  for (int64_t e = 0; e < n_exp; ++e) {
    const auto& toks = by_expert[size_t(e)];
    if (toks.empty()) continue;
    const int64_t m = int64_t(toks.size());
    xin.resize(size_t(m * dim));
    yout.resize(size_t(m * dim));
    for (int64_t i = 0; i < m; ++i)
      std::copy(x + toks[size_t(i)].first * dim, x + (toks[size_t(i)].first + 1) * dim, &xin[size_t(i * dim)]);
    mlp_forward(w.experts[size_t(e)], xin.data(), m, yout.data(), pool);
    for (int64_t i = 0; i < m; ++i) {
      const auto [t, wt] = toks[size_t(i)];
      for (int64_t d = 0; d < dim; ++d) y[size_t(t * dim + d)] += yout[size_t(i * dim + d)] * wt;
    }
  }
  if (w.shared.w1.data) {
    mlp_forward(w.shared, x, n, out, pool);
    for (int64_t i = 0; i < n * dim; ++i) out[i] += y[size_t(i)];
  } else {
    std::copy(y.begin(), y.end(), out);
  }
}

}  // namespace dsv3
