// The trainer's forward pass computes the inference engine's function: logits of the main
// model and of the MTP module agree with model/transformer.h on the same F32 weights.
#include <gtest/gtest.h>

#include <cmath>

#include "model/transformer.h"
#include "train/model.h"
#include "train_test_util.h"

namespace dsv3::train {
namespace {

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST(Equivalence, TrainerLogitsMatchInference) {
  ModelConfig c = testing::tiny_config(50);
  c.hidden_size = 32;
  Params<float> p(c);
  p.init(3);
  Rng r(5);
  for (auto& v : p.data) v += float(r.normal() * 0.1);  // larger weights, nonzero biases
  const int64_t Tn = 9;
  std::vector<int32_t> tokens;
  for (int64_t i = 0; i < Tn + 2; ++i) tokens.push_back(int32_t(r.below(uint64_t(c.vocab_size))));

  TrainModel<float> model(p, Tn);
  model.keep_logits = true;
  ThreadPool pool(2);
  model.run(Exec{&pool}, tokens.data(), 1, Tn, LossOptions{0.3, 0.0}, 1.0, false);

  Transformer tf(c, p.w);
  KVCache cache = tf.make_cache(Tn, DType::F32);
  std::vector<float> logits(size_t(Tn * c.vocab_size)), hidden(size_t(Tn * c.hidden_size));
  std::vector<int32_t> in(tokens.begin(), tokens.begin() + Tn);
  tf.forward(in, 0, cache, logits.data(), true, pool, nullptr, hidden.data());
  EXPECT_LT(max_abs_diff(logits, model.logits), 1e-4f);

  std::vector<int32_t> next(tokens.begin() + 1, tokens.begin() + 1 + Tn);
  std::vector<float> mtp(size_t(Tn * c.vocab_size));
  tf.mtp_forward(0, next, hidden.data(), 0, cache, mtp.data(), true, pool);
  EXPECT_LT(max_abs_diff(mtp, model.mtp_logits), 1e-4f);
}

}  // namespace
}  // namespace dsv3::train
