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

namespace {

// An expert MLP run by the fused path below: its weights, its m gathered input
// rows, and where its activations and output go.
struct FusedMlp {
  const MLPWeights* w;
  const float* x;  // [m, dim]
  int64_t m;
  float* act;      // [m, inter]: silu(w1 x) * w3 x
  float* out;      // [m, dim]
};

// Cumulative-cost split of `units` (each with cost cost[i] per row, rows[i] rows) into nth
// contiguous shares of (unit, row) ranges, shrinking towards the end for `threads` threads
// (ThreadPool::guided_start); calls fn(unit, r0, r1) for share ith. Shares end on multiples of
// `align` rows inside a unit so register tiles are not cut. Depends only on the inputs, nth
// and threads, never on timing.
template <class F>
void split_rows(const std::vector<int64_t>& rows, const std::vector<int64_t>& cost, int ith, int nth, int threads,
                int64_t align, const F& fn) {
  int64_t total = 0;
  for (size_t i = 0; i < rows.size(); ++i) total += rows[i] * cost[i];
  const int64_t lo = ThreadPool::guided_start(total, ith, nth, threads),
                hi = ThreadPool::guided_start(total, ith + 1, nth, threads);
  int64_t acc = 0;  // cost before unit i
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t span = rows[i] * cost[i];
    const int64_t a = std::max(lo, acc), b = std::min(hi, acc + span);
    if (a < b) {
      // Row boundaries: the row whose start is at or after the cost boundary, aligned.
      auto row_at = [&](int64_t c) {
        if (c >= acc + span) return rows[i];
        int64_t r = (c - acc + cost[i] - 1) / cost[i];
        r = (r + align - 1) / align * align;
        return std::min(r, rows[i]);
      };
      const int64_t r0 = row_at(a), r1 = row_at(b);
      if (r0 < r1) fn(i, r0, r1);
    }
    acc += span;
  }
}

// y[t, r] for rows [r0, r1) of w and t < m, on the calling thread (a row view of w: every row
// gets the bits the whole-matrix call gives it).
void linear_rows(const kernels::Matrix& w, const float* x, int64_t m, int64_t r0, int64_t r1, float* y,
                 std::vector<float>& tmp) {
  const int64_t len = r1 - r0;
  if (m == 1) return kernels::linear(w.row_slice(r0, len), x, y + r0, 1);
  tmp.resize(size_t(m * len));
  kernels::linear(w.row_slice(r0, len), x, tmp.data(), m);
  for (int64_t t = 0; t < m; ++t) std::copy(&tmp[size_t(t * len)], &tmp[size_t((t + 1) * len)], y + t * w.rows + r0);
}

// Several MLPs in two parallel regions instead of three per MLP: first every MLP's gate and up
// rows (with the SiLU gating of those rows), then every MLP's down rows, each region's rows
// split by cost into kOversplit shares per thread, claimed dynamically. Decode runs 7+ MLPs per
// MoE layer of a few hundred rows each, prefill dozens of experts of tens of tokens each; one
// region per weight matrix left threads waiting at 3 barriers per expert.
void fused_mlps(std::vector<FusedMlp>& mlps, ThreadPool& pool) {
  if (mlps.empty()) return;
  constexpr int64_t kAlign = 16;
  std::vector<int64_t> rows, cost;
  for (const FusedMlp& f : mlps) {
    rows.push_back(f.w->w1.rows);
    cost.push_back(2 * (8 + f.m));  // w1 and w3 rows: weight decode ~ 8 token-FMAs, plus m
  }
  pool.run([&](int ith, int nth) {
    std::vector<float> gate, up;
    split_rows(rows, cost, ith, nth, pool.size(), kAlign, [&](size_t i, int64_t r0, int64_t r1) {
      const FusedMlp& f = mlps[i];
      const int64_t inter = f.w->w1.rows, len = r1 - r0;
      gate.resize(size_t(f.m * len));
      up.resize(size_t(f.m * len));
      kernels::linear(f.w->w1.row_slice(r0, len), f.x, gate.data(), f.m);
      kernels::linear(f.w->w3.row_slice(r0, len), f.x, up.data(), f.m);
      kernels::silu_mul(gate.data(), up.data(), gate.data(), f.m * len);
      for (int64_t t = 0; t < f.m; ++t)
        std::copy(&gate[size_t(t * len)], &gate[size_t((t + 1) * len)], f.act + t * inter + r0);
    });
  }, pool.size() * ThreadPool::kOversplit);
  rows.clear();
  cost.clear();
  for (const FusedMlp& f : mlps) {
    rows.push_back(f.w->w2.rows);
    cost.push_back(8 + f.m);
  }
  pool.run([&](int ith, int nth) {
    std::vector<float> tmp;
    split_rows(rows, cost, ith, nth, pool.size(), kAlign, [&](size_t i, int64_t r0, int64_t r1) {
      const FusedMlp& f = mlps[i];
      linear_rows(f.w->w2, f.act, f.m, r0, r1, f.out, tmp);
    });
  }, pool.size() * ThreadPool::kOversplit);
}

}  // namespace

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
  std::vector<Routing> routes(static_cast<size_t>(n));
  pool.parallel_for(
      n,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
          routes[size_t(t)] = route(c, &logits[size_t(t * n_exp)], bias.empty() ? nullptr : bias.data());
      },
      ThreadPool::kTokenGrain);

  // Group tokens by expert: for each expert these weights hold (all, or this rank's block),
  // the tokens that chose it and their weights; and for each token, the rows of the gathered
  // inputs its experts' results land in, in expert order (the order model.py's loop adds them in).
  auto held = [&](int32_t e) { return e >= w.experts_begin && e < w.experts_end; };
  std::vector<std::vector<std::pair<int64_t, float>>> by_expert(static_cast<size_t>(n_exp));
  std::vector<int64_t> token_first(static_cast<size_t>(n + 1), 0);  // token t's entries: [first[t], first[t + 1])
  for (int64_t t = 0; t < n; ++t) {
    const Routing& r = routes[size_t(t)];
    token_first[size_t(t + 1)] = token_first[size_t(t)];
    for (size_t k = 0; k < r.experts.size(); ++k)
      if (held(r.experts[k])) {
        by_expert[size_t(r.experts[k])].push_back({t, r.weights[k]});
        ++token_first[size_t(t + 1)];
      }
  }
  std::vector<int64_t> offset(size_t(n_exp) + 1, 0);
  for (int64_t e = 0; e < n_exp; ++e) offset[size_t(e) + 1] = offset[size_t(e)] + int64_t(by_expert[size_t(e)].size());
  const int64_t routed_rows = offset[size_t(n_exp)];
  std::vector<std::pair<int64_t, float>> token_rows(static_cast<size_t>(routed_rows));  // (row, weight)
  {
    std::vector<int64_t> fill(token_first.begin(), token_first.end() - 1);
    for (int64_t e = 0; e < n_exp; ++e)
      for (size_t i = 0; i < by_expert[size_t(e)].size(); ++i) {
        const auto [t, wt] = by_expert[size_t(e)][i];
        token_rows[size_t(fill[size_t(t)]++)] = {offset[size_t(e)] + int64_t(i), wt};
      }
  }
  if (routing_out) *routing_out = std::move(routes);

  // Each selected expert's gathered inputs and outputs; all experts and the shared experts run
  // in the two fused regions, their rows split by cost. One expert at a time across all threads
  // (three regions each) was 4-5% slower for a 512-token prefill of `medium`, where 64 experts
  // of ~48 tokens each make 2112 regions per prompt.
  const bool has_shared = w.shared.w1.data != nullptr;
  std::vector<float> xin(static_cast<size_t>(routed_rows * dim)), yout(static_cast<size_t>(routed_rows * dim));
  pool.parallel_for(
      n,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t k = token_first[size_t(t)]; k < token_first[size_t(t + 1)]; ++k)
            std::copy(x + t * dim, x + (t + 1) * dim, &xin[size_t(token_rows[size_t(k)].first * dim)]);
      },
      ThreadPool::kTokenGrain);
  int64_t act_floats = 0;
  for (int64_t e = 0; e < n_exp; ++e) act_floats += int64_t(by_expert[size_t(e)].size()) * w.experts[size_t(e)].w1.rows;
  if (has_shared) act_floats += n * w.shared.w1.rows;
  std::vector<float> act(static_cast<size_t>(act_floats));
  std::vector<FusedMlp> fused;
  int64_t act_at = 0;
  for (int64_t e = 0; e < n_exp; ++e) {
    const int64_t m = int64_t(by_expert[size_t(e)].size());
    if (m == 0) continue;
    const float* xe = &xin[size_t(offset[size_t(e)] * dim)];
    float* ye = &yout[size_t(offset[size_t(e)] * dim)];
    const MLPWeights& we = w.experts[size_t(e)];
    fused.push_back({&we, xe, m, &act[size_t(act_at)], ye});
    act_at += m * we.w1.rows;
  }
  if (has_shared) fused.push_back({&w.shared, x, n, &act[size_t(act_at)], out});
  fused_mlps(fused, pool);

  // Per token: its routed experts' outputs, weighted, summed in expert order (as model.py's
  // loop) onto zero, then added to the shared experts' output.
  pool.parallel_for(
      n,
      [&](int64_t t0, int64_t t1) {
        std::vector<float> y(static_cast<size_t>(dim));
        for (int64_t t = t0; t < t1; ++t) {
          std::fill(y.begin(), y.end(), 0.0f);
          for (int64_t k = token_first[size_t(t)]; k < token_first[size_t(t + 1)]; ++k) {
            const auto [row, wt] = token_rows[size_t(k)];
            const float* ye = &yout[size_t(row * dim)];
            for (int64_t d = 0; d < dim; ++d) y[size_t(d)] += ye[d] * wt;
          }
          float* ot = out + t * dim;
          if (has_shared) {
            for (int64_t d = 0; d < dim; ++d) ot[d] += y[size_t(d)];
          } else {
            std::copy(y.begin(), y.end(), ot);
          }
        }
      },
      ThreadPool::kTokenGrain);
}

}  // namespace dsv3
