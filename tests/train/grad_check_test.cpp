// Gradient checks in double precision: every block's backward pass against central finite
// differences of its forward pass.
#include <gtest/gtest.h>

#include "train/attention.h"
#include "train/balance.h"
#include "train/ffn.h"
#include "train/model.h"
#include "train/ops.h"
#include "train/params.h"
#include "train_test_util.h"

namespace dsv3::train {
namespace {

using testing::check_grad;
using testing::random_vec;
using testing::tiny_config;

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(GradCheck, RMSNorm) {
  const int64_t n = 3, d = 7;
  auto x = random_vec(n * d, 1), w = random_vec(d, 2), c = random_vec(n * d, 3);
  auto f = [&] {
    std::vector<double> y(n * d), r(n);
    rmsnorm_fwd(x.data(), d, w.data(), n, d, 1e-6, y.data(), d, r.data());
    return dot(y, c);
  };
  std::vector<double> y(n * d), r(n), dx(n * d), dw(d, 0.0);
  rmsnorm_fwd(x.data(), d, w.data(), n, d, 1e-6, y.data(), d, r.data());
  rmsnorm_bwd(x.data(), d, w.data(), r.data(), c.data(), d, n, d, dx.data(), d, false, dw.data());
  check_grad("rmsnorm dx", x.data(), dx.data(), x.size(), f);
  check_grad("rmsnorm dw", w.data(), dw.data(), w.size(), f);
}

TEST(GradCheck, Rope) {
  ModelConfig cfg = tiny_config();
  cfg.qk_rope_head_dim = 8;
  RopeTable rope(cfg, 16);
  auto x = random_vec(8, 4), c = random_vec(8, 5);
  auto f = [&] {
    std::vector<double> y = x;
    rope_rotate(y.data(), rope, 11, false);
    return dot(y, c);
  };
  std::vector<double> dx = c;
  rope_rotate(dx.data(), rope, 11, true);
  check_grad("rope dx", x.data(), dx.data(), x.size(), f);
}

TEST(GradCheck, CrossEntropy) {
  const int64_t n = 4, V = 9;
  auto z = random_vec(n * V, 6);
  std::vector<int32_t> tgt = {0, 3, 8, 3};
  auto f = [&] {
    std::vector<double> zz = z;
    return cross_entropy(zz.data(), tgt.data(), n, V, 1.0, nullptr);
  };
  std::vector<double> dz = z;
  cross_entropy(dz.data(), tgt.data(), n, V, 1.0, nullptr);
  check_grad("cross-entropy", z.data(), dz.data(), z.size(), f);
}

TEST(GradCheck, SequenceBalanceLoss) {
  const int64_t Tn = 5, E = 6, K = 2;
  auto s = random_vec(Tn * E, 7);
  for (double& v : s) v = 1 / (1 + std::exp(-v));
  std::vector<int32_t> sel = {0, 1, 2, 3, 0, 5, 4, 1, 0, 2};
  auto f = [&] { return sequence_balance_loss<double>(s.data(), sel.data(), Tn, E, K, 0.3, 0, nullptr); };
  std::vector<double> ds(Tn * E, 0.0);
  sequence_balance_loss<double>(s.data(), sel.data(), Tn, E, K, 0.3, 1.0, ds.data());
  check_grad("balance loss", s.data(), ds.data(), s.size(), f);
}

// A module's parameters: everything reachable from `table` entries whose name contains `part`.
struct Fixture {
  ModelConfig c = tiny_config();
  Params<double> p{c};
  Fixture() {
    p.init(42);
    // Larger weights than the 0.02 init so every path carries signal; random biases.
    Rng r(9);
    for (auto& v : p.data) v += r.normal() * 0.3;
  }
  void check_params(const std::string& part, const std::function<double()>& f) {
    for (const ParamInfo& info : p.table) {
      if (!info.stored || info.spec.name.find(part) == std::string::npos || !info.trainable()) continue;
      check_grad(info.spec.name.c_str(), p.data.data() + info.offset, p.grad.data() + info.offset, size_t(info.numel),
                 f, 12);
    }
  }
};

TEST(GradCheck, MLA) {
  Fixture fx;
  const int64_t B = 2, Tn = 5, dim = fx.c.hidden_size, n = B * Tn;
  RopeTable rope(fx.c, Tn);
  const MLAWeights& w = fx.p.w.layers[0].attn;
  auto x = random_vec(n * dim, 11), c = random_vec(n * dim, 12);
  auto f = [&] {
    MLAAct<double> a;
    std::vector<double> out(n * dim);
    mla_train_forward(Exec{}, fx.c, rope, w, x.data(), B, Tn, out.data(), a);
    return dot(out, c);
  };
  MLAAct<double> a;
  std::vector<double> out(n * dim), dx(n * dim, 0.0);
  fx.p.zero_grad();
  mla_train_forward(Exec{}, fx.c, rope, w, x.data(), B, Tn, out.data(), a);
  mla_train_backward(Exec{}, fx.c, rope, w, fx.p.g.layers[0].attn, x.data(), B, Tn, c.data(), dx.data(), a);
  check_grad("mla dx", x.data(), dx.data(), x.size(), f);
  fx.check_params("layers.0.self_attn", f);
}

TEST(GradCheck, SwiGLU) {
  Fixture fx;
  const int64_t n = 6, dim = fx.c.hidden_size;
  const MLPWeights& w = fx.p.w.layers[0].mlp;
  auto x = random_vec(n * dim, 13), c = random_vec(n * dim, 14);
  auto f = [&] {
    MLPAct<double> a;
    std::vector<double> out(n * dim);
    mlp_train_forward(Exec{}, w, x.data(), n, out.data(), a);
    return dot(out, c);
  };
  MLPAct<double> a;
  std::vector<double> out(n * dim), dx(n * dim);
  fx.p.zero_grad();
  mlp_train_forward(Exec{}, w, x.data(), n, out.data(), a);
  mlp_train_backward(Exec{}, w, fx.p.g.layers[0].mlp, x.data(), n, c.data(), dx.data(), false, a);
  check_grad("mlp dx", x.data(), dx.data(), x.size(), f);
  fx.check_params("layers.0.mlp", f);
}

TEST(GradCheck, MoEWithGatingAndBalanceLoss) {
  Fixture fx;
  const int64_t B = 2, Tn = 4, dim = fx.c.hidden_size, n = B * Tn;
  const MoEWeights& w = fx.p.w.layers[1].moe;
  auto x = random_vec(n * dim, 15), c = random_vec(n * dim, 16);
  const double alpha = 0.1;
  auto f = [&] {
    MoEAct<double> a;
    std::vector<double> out(n * dim);
    double bal = 0;
    moe_train_forward(Exec{}, fx.c, w, x.data(), B, Tn, out.data(), a, alpha, &bal);
    return dot(out, c) + bal;
  };
  MoEAct<double> a;
  std::vector<double> out(n * dim), dx(n * dim, 0.0);
  double bal = 0;
  fx.p.zero_grad();
  moe_train_forward(Exec{}, fx.c, w, x.data(), B, Tn, out.data(), a, alpha, &bal);
  EXPECT_GT(bal, 0);
  moe_train_backward(Exec{}, fx.c, w, fx.p.g.layers[1].moe, x.data(), B, Tn, c.data(), dx.data(), a, alpha, 1.0);
  check_grad("moe dx", x.data(), dx.data(), x.size(), f);
  fx.check_params("layers.1.mlp", f);  // gate, routed experts, shared expert
}

// The whole model with its MTP module: every parameter, through both losses and the balance loss.
TEST(GradCheck, WholeModelWithMTP) {
  Fixture fx;
  const int64_t B = 2, Tn = 6;
  std::vector<int32_t> tokens;
  Rng r(17);
  for (int64_t i = 0; i < B * (Tn + 2); ++i) tokens.push_back(int32_t(r.below(uint64_t(fx.c.vocab_size))));
  TrainModel<double> model(fx.p, Tn);
  const LossOptions o{0.3, 0.05};
  auto f = [&] { return model.run(Exec{}, tokens.data(), B, Tn, o, 1.0, false).total(o.mtp_lambda); };
  fx.p.zero_grad();
  const LossParts l = model.run(Exec{}, tokens.data(), B, Tn, o, 1.0, true);
  EXPECT_GT(l.mtp, 0);
  EXPECT_GT(l.balance, 0);
  fx.check_params("", f);
}

}  // namespace
}  // namespace dsv3::train
