#include "train/params.h"

#include <cmath>
#include <map>

#include "core/error.h"
#include "train/rng.h"

namespace dsv3::train {

void check_trainable(const ModelConfig& c) {
  DSV3_CHECK(c.model_type == "deepseek_v3", "train: model_type must be deepseek_v3, not '", c.model_type, "'");
  DSV3_CHECK(c.n_routed_experts == 0 || c.scoring_func == "sigmoid",
             "train: only sigmoid expert affinities (DeepSeek-V3) are supported, not ", c.scoring_func);
  DSV3_CHECK(!c.tie_word_embeddings, "train: tie_word_embeddings is not supported");
  DSV3_CHECK(c.num_nextn_predict_layers <= 1, "train: at most one MTP module (num_nextn_predict_layers ",
             c.num_nextn_predict_layers, ")");
  DSV3_CHECK(c.qk_rope_head_dim % 2 == 0, "train: qk_rope_head_dim must be even");
  DSV3_CHECK(c.n_routed_experts == 0 || (c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.n_routed_experts),
             "train: num_experts_per_tok ", c.num_experts_per_tok, " must be in [1, n_routed_experts = ",
             c.n_routed_experts, "]");
  if (c.n_routed_experts > 0 && c.group_limited()) {
    DSV3_CHECK(c.n_routed_experts % c.n_group == 0, "train: n_routed_experts must be a multiple of n_group");
    DSV3_CHECK(c.topk_group >= 1 && c.topk_group <= c.n_group, "train: topk_group must be in [1, n_group]");
    DSV3_CHECK(c.topk_group * (c.n_routed_experts / c.n_group) >= c.num_experts_per_tok,
               "train: topk_group groups hold fewer experts than num_experts_per_tok");
    DSV3_CHECK(c.n_routed_experts / c.n_group >= 2 || !c.has_score_bias(), "train: groups need >= 2 experts");
  }
}

template <typename T>
Params<T>::Params(const ModelConfig& c) : config(c) {
  check_trainable(c);
  std::map<std::string, int64_t> offsets;
  int64_t total = 0;
  visit_tensors(c, /*include_mtp=*/true, nullptr, [&](const TensorSpec& s) {
    ParamInfo p{s};
    p.spec.slot = nullptr;
    p.numel = s.shape.numel();
    std::string main_name;
    if (s.mtp && s.kind == TensorKind::Embedding) main_name = "model.embed_tokens.weight";
    if (s.mtp && s.kind == TensorKind::Head) main_name = "lm_head.weight";
    if (!main_name.empty()) {
      p.stored = false;
      p.offset = offsets.at(main_name);
    } else {
      p.offset = total;
      total += p.numel;
    }
    offsets[s.name] = p.offset;
    table.push_back(p);
  });
  data.assign(size_t(total), T(0));
  grad.assign(size_t(total), T(0));
  for (int pass = 0; pass < 2; ++pass) {
    ModelWeights& mw = pass == 0 ? w : g;
    T* base = pass == 0 ? data.data() : grad.data();
    size_t i = 0;
    visit_tensors(c, true, &mw, [&](const TensorSpec& s) {
      const ParamInfo& p = table[i++];
      Matrix& m = *s.slot;
      m.dtype = std::is_same_v<T, float> ? DType::F32 : DType::F64;
      m.rows = s.shape.rank == 1 ? 1 : s.shape[0];
      m.cols = s.shape.rank == 1 ? s.shape[0] : s.shape[1];
      m.data = base + p.offset;
    });
  }
}

template <typename T>
void Params<T>::init(uint64_t seed) {
  const double resid_scale = 1.0 / std::sqrt(2.0 * double(config.num_hidden_layers + config.num_nextn_predict_layers));
  for (const ParamInfo& p : table) {
    if (!p.stored) continue;
    T* d = data.data() + p.offset;
    switch (p.spec.kind) {
      case TensorKind::Norm: std::fill(d, d + p.numel, T(1)); break;
      case TensorKind::GateBias: std::fill(d, d + p.numel, T(0)); break;
      default: {
        double sigma = 0.02;
        const std::string& n = p.spec.name;
        if (n.find("o_proj") != std::string::npos || n.find("down_proj") != std::string::npos) sigma *= resid_scale;
        Rng rng(hash_seed(n, seed));
        for (int64_t i = 0; i < p.numel; ++i) d[i] = T(rng.normal() * sigma);
      }
    }
  }
}

template <typename T>
void Params<T>::zero_grad() {
  std::fill(grad.begin(), grad.end(), T(0));
}

template struct Params<float>;
template struct Params<double>;

}  // namespace dsv3::train
