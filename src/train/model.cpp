#include "train/model.h"

#include <algorithm>

#include "core/error.h"

namespace dsv3::train {

namespace {
template <typename T>
T* P(const Matrix& m) {
  return static_cast<T*>(const_cast<void*>(m.data));
}
}  // namespace

template <typename T>
TrainModel<T>::TrainModel(Params<T>& p, int64_t max_len)
    : p_(p), c_(p.config), rope_(p.config, max_len), layers_(size_t(p.config.num_hidden_layers + p.w.mtp.size())) {}

template <typename T>
void TrainModel<T>::block_forward(const Exec& e, const BlockWeights& w, T* x, int64_t B, int64_t Tn, BlockAct<T>& a,
                                  double alpha, double* bal) {
  const int64_t n = B * Tn, dim = c_.hidden_size;
  a.x_in.assign(x, x + n * dim);
  a.h1.resize(size_t(n * dim));
  a.r1.resize(static_cast<size_t>(n));
  a.h2.resize(size_t(n * dim));
  a.r2.resize(static_cast<size_t>(n));
  a.tmp.resize(size_t(n * dim));
  rmsnorm_fwd(x, dim, P<T>(w.attn_norm), n, dim, c_.rms_norm_eps, a.h1.data(), dim, a.r1.data());
  mla_train_forward(e, c_, rope_, w.attn, a.h1.data(), B, Tn, a.tmp.data(), a.attn);
  for (int64_t i = 0; i < n * dim; ++i) x[i] += a.tmp[size_t(i)];
  a.x_mid.assign(x, x + n * dim);
  rmsnorm_fwd(x, dim, P<T>(w.ffn_norm), n, dim, c_.rms_norm_eps, a.h2.data(), dim, a.r2.data());
  if (w.is_moe)
    moe_train_forward(e, c_, w.moe, a.h2.data(), B, Tn, a.tmp.data(), a.moe, alpha, bal);
  else
    mlp_train_forward(e, w.mlp, a.h2.data(), n, a.tmp.data(), a.mlp);
  for (int64_t i = 0; i < n * dim; ++i) x[i] += a.tmp[size_t(i)];
}

template <typename T>
void TrainModel<T>::block_backward(const Exec& e, const BlockWeights& w, const BlockWeights& g, T* dx, int64_t B,
                                   int64_t Tn, BlockAct<T>& a, double alpha, double scale) {
  const int64_t n = B * Tn, dim = c_.hidden_size;
  // dx holds d(block output); it becomes d(x_mid), then d(x_in).
  std::vector<T> dh(size_t(n * dim), T(0));
  if (w.is_moe)
    moe_train_backward(e, c_, w.moe, g.moe, a.h2.data(), B, Tn, dx, dh.data(), a.moe, alpha, scale);
  else
    mlp_train_backward(e, w.mlp, g.mlp, a.h2.data(), n, dx, dh.data(), false, a.mlp);
  rmsnorm_bwd(a.x_mid.data(), dim, P<T>(w.ffn_norm), a.r2.data(), dh.data(), dim, n, dim, dx, dim, true,
              P<T>(g.ffn_norm));
  std::fill(dh.begin(), dh.end(), T(0));
  mla_train_backward(e, c_, rope_, w.attn, g.attn, a.h1.data(), B, Tn, dx, dh.data(), a.attn);
  rmsnorm_bwd(a.x_in.data(), dim, P<T>(w.attn_norm), a.r1.data(), dh.data(), dim, n, dim, dx, dim, true,
              P<T>(g.attn_norm));
}

template <typename T>
LossParts TrainModel<T>::run(const Exec& e, const int32_t* tokens, int64_t B, int64_t Tn, const LossOptions& o,
                             double grad_scale, bool backward) {
  DSV3_CHECK(Tn >= 1 && Tn <= rope_.max_len, "train: sequence length ", Tn, " outside [1, ", rope_.max_len, "]");
  const int64_t n = B * Tn, dim = c_.hidden_size, V = c_.vocab_size, L = c_.num_hidden_layers, S = Tn + 2;
  const double eps = c_.rms_norm_eps;
  const bool mtp = has_mtp() && o.mtp_lambda > 0;
  std::vector<int32_t> in(static_cast<size_t>(n)), next(static_cast<size_t>(n)), next2(static_cast<size_t>(n));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t) {
      in[size_t(b * Tn + t)] = tokens[b * S + t];
      next[size_t(b * Tn + t)] = tokens[b * S + t + 1];
      next2[size_t(b * Tn + t)] = tokens[b * S + t + 2];
    }
  for (int64_t i = 0; i < B * S; ++i)
    DSV3_CHECK(tokens[i] >= 0 && tokens[i] < V, "train: token id ", tokens[i], " outside the vocabulary [0, ", V, ")");

  LossParts loss;
  const T* embed = P<T>(p_.w.embed);
  std::vector<T> x(size_t(n * dim));
  for (int64_t r = 0; r < n; ++r) std::copy(embed + in[size_t(r)] * dim, embed + (in[size_t(r)] + 1) * dim, &x[size_t(r * dim)]);
  for (int64_t l = 0; l < L; ++l)
    block_forward(e, p_.w.layers[size_t(l)], x.data(), B, Tn, layers_[size_t(l)], o.balance_alpha, &loss.balance);
  // h = model.norm(x): what the head and the MTP module read.
  std::vector<T> h(size_t(n * dim)), hr(static_cast<size_t>(n));
  rmsnorm_fwd(x.data(), dim, P<T>(p_.w.norm), n, dim, eps, h.data(), dim, hr.data());
  std::vector<T> z(size_t(n * V));
  linear_fwd(e, P<T>(p_.w.head), V, dim, h.data(), n, z.data(), false);
  loss.main = cross_entropy(z.data(), next.data(), n, V, grad_scale / double(n), e.pool, keep_logits ? &logits : nullptr) / double(n);

  // MTP module.
  const MTPWeights* mw = mtp ? &p_.w.mtp[0] : nullptr;
  BlockAct<T>* ma = mtp ? &layers_[size_t(L)] : nullptr;
  std::vector<T> emb, en, enr, hn, hnr, cat, m, mn, mnr, mz;
  if (mtp) {
    emb.resize(size_t(n * dim));
    en.resize(size_t(n * dim));
    hn.resize(size_t(n * dim));
    enr.resize(static_cast<size_t>(n));
    hnr.resize(static_cast<size_t>(n));
    cat.resize(size_t(n * 2 * dim));
    for (int64_t r = 0; r < n; ++r)
      std::copy(embed + next[size_t(r)] * dim, embed + (next[size_t(r)] + 1) * dim, &emb[size_t(r * dim)]);
    rmsnorm_fwd(emb.data(), dim, P<T>(mw->enorm), n, dim, eps, cat.data(), 2 * dim, enr.data());
    rmsnorm_fwd(h.data(), dim, P<T>(mw->hnorm), n, dim, eps, cat.data() + dim, 2 * dim, hnr.data());
    m.resize(size_t(n * dim));
    linear_fwd(e, P<T>(mw->eh_proj), dim, 2 * dim, cat.data(), n, m.data());
    block_forward(e, mw->block, m.data(), B, Tn, *ma, o.balance_alpha, &loss.balance);
    mn.resize(size_t(n * dim));
    mnr.resize(static_cast<size_t>(n));
    rmsnorm_fwd(m.data(), dim, P<T>(mw->head_norm), n, dim, eps, mn.data(), dim, mnr.data());
    mz.resize(size_t(n * V));
    linear_fwd(e, P<T>(mw->head), V, dim, mn.data(), n, mz.data(), false);
    loss.mtp = cross_entropy(mz.data(), next2.data(), n, V, grad_scale * o.mtp_lambda / double(n), e.pool,
                             keep_logits ? &mtp_logits : nullptr) / double(n);
  }
  if (!backward) return loss;

  // Backward. z and mz now hold d(logits).
  const ModelWeights& g = p_.g;
  std::vector<T> dh(size_t(n * dim));
  linear_bwd(e, P<T>(p_.w.head), P<T>(g.head), V, dim, h.data(), z.data(), n, dh.data(), false, false);
  T* dembed = P<T>(g.embed);
  if (mtp) {
    const MTPWeights& mg = g.mtp[0];
    std::vector<T> dm(size_t(n * dim)), dmn(size_t(n * dim)), dcat(size_t(n * 2 * dim));
    linear_bwd(e, P<T>(mw->head), P<T>(mg.head), V, dim, mn.data(), mz.data(), n, dmn.data(), false, false);
    rmsnorm_bwd(m.data(), dim, P<T>(mw->head_norm), mnr.data(), dmn.data(), dim, n, dim, dm.data(), dim, false,
                P<T>(mg.head_norm));
    block_backward(e, mw->block, mg.block, dm.data(), B, Tn, *ma, o.balance_alpha, grad_scale);
    linear_bwd(e, P<T>(mw->eh_proj), P<T>(mg.eh_proj), dim, 2 * dim, cat.data(), dm.data(), n, dcat.data(), false);
    rmsnorm_bwd(h.data(), dim, P<T>(mw->hnorm), hnr.data(), dcat.data() + dim, 2 * dim, n, dim, dh.data(), dim, true,
                P<T>(mg.hnorm));
    rmsnorm_bwd(emb.data(), dim, P<T>(mw->enorm), enr.data(), dcat.data(), 2 * dim, n, dim, dm.data(), dim, false,
                P<T>(mg.enorm));
    for (int64_t r = 0; r < n; ++r) {
      T* d = dembed + next[size_t(r)] * dim;
      for (int64_t i = 0; i < dim; ++i) d[i] += dm[size_t(r * dim + i)];
    }
  }
  std::vector<T>& dx = x;  // x (the last residual) is only needed for model.norm's backward
  std::vector<T> x_last = x;
  rmsnorm_bwd(x_last.data(), dim, P<T>(p_.w.norm), hr.data(), dh.data(), dim, n, dim, dx.data(), dim, false,
              P<T>(g.norm));
  for (int64_t l = L - 1; l >= 0; --l)
    block_backward(e, p_.w.layers[size_t(l)], g.layers[size_t(l)], dx.data(), B, Tn, layers_[size_t(l)],
                   o.balance_alpha, grad_scale);
  for (int64_t r = 0; r < n; ++r) {
    T* d = dembed + in[size_t(r)] * dim;
    for (int64_t i = 0; i < dim; ++i) d[i] += dx[size_t(r * dim + i)];
  }
  return loss;
}

template <typename T>
std::vector<std::vector<int64_t>> TrainModel<T>::loads() const {
  std::vector<std::vector<int64_t>> out;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const BlockWeights& w = l < size_t(c_.num_hidden_layers) ? p_.w.layers[l] : p_.w.mtp[0].block;
    if (w.is_moe) out.push_back(layers_[l].moe.load);
  }
  return out;
}

template <typename T>
std::vector<int64_t> TrainModel<T>::moe_layer_ids() const {
  std::vector<int64_t> ids;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const BlockWeights& w = l < size_t(c_.num_hidden_layers) ? p_.w.layers[l] : p_.w.mtp[0].block;
    if (w.is_moe) ids.push_back(int64_t(l));
  }
  return ids;
}

template <typename T>
std::vector<T*> TrainModel<T>::moe_biases() const {
  std::vector<T*> out;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const BlockWeights& w = l < size_t(c_.num_hidden_layers) ? p_.w.layers[l] : p_.w.mtp[0].block;
    if (w.is_moe) out.push_back(w.moe.gate_bias.data ? P<T>(w.moe.gate_bias) : nullptr);
  }
  return out;
}

template class TrainModel<float>;
template class TrainModel<double>;

}  // namespace dsv3::train
