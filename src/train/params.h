// The trainable state of a DeepSeek-V3-architecture model: every tensor of model/weights.h's
// visit_tensors list in one flat buffer (and its gradient in another), with ModelWeights views
// into both so the training code reads weights by their model.py names. The MTP module's
// embed_tokens and shared_head.head are, as in the report (section 2.2), shared with the main
// model: they alias model.embed_tokens and lm_head and are written as copies on save.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"
#include "model/weights.h"

namespace dsv3::train {

struct ParamInfo {
  TensorSpec spec;     // HF name, shape, kind (slot cleared)
  int64_t offset = 0;  // into data/grad
  int64_t numel = 0;
  bool stored = true;  // false: an alias of another entry (MTP embed/head), same offset
  bool trainable() const { return spec.kind != TensorKind::GateBias; }  // biases follow the balance rule
  bool decay() const { return spec.shape.rank == 2; }  // weight decay on matrices, not norms
};

// Throws dsv3::Error when the config is one the trainer does not support (softmax routing,
// tied embeddings, more than one MTP module, ...).
void check_trainable(const ModelConfig& c);

template <typename T>
struct Params {
  explicit Params(const ModelConfig& c);
  Params(const Params&) = delete;  // the views point into this object's buffers
  Params& operator=(const Params&) = delete;

  // nanoGPT / GPT-2 initialisation: N(0, 0.02) for matrices, output projections (o_proj,
  // down_proj) scaled by 1/sqrt(2 * layers), norms 1, balance biases 0. Each tensor draws from
  // its own seed (name hash), so the result does not depend on the visiting order.
  void init(uint64_t seed);
  void zero_grad();
  T* ptr(const Matrix& m) const { return static_cast<T*>(const_cast<void*>(m.data)); }
  int64_t size() const { return int64_t(data.size()); }

  ModelConfig config;
  std::vector<ParamInfo> table;  // visit_tensors order (with MTP), aliases included
  std::vector<T> data, grad;
  ModelWeights w, g;  // views into data and grad
};

}  // namespace dsv3::train
