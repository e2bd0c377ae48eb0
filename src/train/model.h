// The whole DeepSeek-V3 architecture for training: embedding, decoder blocks (RMSNorm -> MLA
// -> residual -> RMSNorm -> MLP or MoE -> residual), final norm, output head, cross-entropy,
// and the depth-1 MTP module (report section 2.2) exactly as inference runs it
// (model/transformer.h mtp_forward): row i reads h[i] (after model.norm) and token t[i+1],
//   x = eh_proj(concat(enorm(embed(t[i+1])), hnorm(h[i]))) -> block -> shared_head.norm -> head
// and predicts t[i+2]. Forward and backward, batch of B sequences of Tn positions.
#pragma once
#include <cstdint>
#include <vector>

#include "train/attention.h"
#include "train/ffn.h"
#include "train/params.h"

namespace dsv3::train {

struct LossParts {
  double main = 0;     // mean next-token cross-entropy (nats)
  double mtp = 0;      // mean cross-entropy of the MTP module (predicting t[i+2]); 0 when off
  double balance = 0;  // summed sequence-wise balance losses of the MoE layers (alpha included)
  double total(double lambda) const { return main + lambda * mtp + balance; }
};

struct LossOptions {
  double mtp_lambda = 0.3;     // weight of the MTP loss; 0 switches the module off
  double balance_alpha = 0.0;  // sequence-wise balance loss weight; 0: none
};

template <typename T>
struct BlockAct {
  std::vector<T> x_in, x_mid;  // [n, dim] residual stream entering the block / after attention
  std::vector<T> h1, r1, h2, r2;  // normed inputs of attention and FFN, their rstd
  MLAAct<T> attn;
  MLPAct<T> mlp;
  MoEAct<T> moe;
  std::vector<T> tmp;
};

template <typename T>
class TrainModel {
 public:
  // `max_len`: longest sequence (Tn) the model will be run on.
  TrainModel(Params<T>& p, int64_t max_len);

  // tokens: B rows of Tn + 2 ids: inputs t[0..Tn), next-token targets t[1..Tn], MTP targets
  // t[2..Tn+1]. Runs the forward pass and, when `backward`, adds the gradient of
  // grad_scale * (main + lambda mtp + balance) to the parameters' grad.
  LossParts run(const Exec& e, const int32_t* tokens, int64_t B, int64_t Tn, const LossOptions& o, double grad_scale,
                bool backward);

  bool has_mtp() const { return !p_.w.mtp.empty(); }
  // Expert loads of the last run, one vector per MoE layer (main MoE layers, then the MTP block).
  std::vector<std::vector<int64_t>> loads() const;
  // HF layer index of each MoE layer in loads() order, and a pointer to its balance bias.
  std::vector<int64_t> moe_layer_ids() const;
  std::vector<T*> moe_biases() const;

  bool keep_logits = false;              // tests: keep logits of the last run
  std::vector<T> logits, mtp_logits;     // [B * Tn, vocab] when keep_logits

 private:
  void block_forward(const Exec& e, const BlockWeights& w, T* x, int64_t B, int64_t Tn, BlockAct<T>& a, double alpha,
                     double* bal);
  void block_backward(const Exec& e, const BlockWeights& w, const BlockWeights& g, T* dx, int64_t B, int64_t Tn,
                      BlockAct<T>& a, double alpha, double scale);

  Params<T>& p_;
  const ModelConfig& c_;
  RopeTable rope_;
  std::vector<BlockAct<T>> layers_;  // main layers, then the MTP block
};

}  // namespace dsv3::train
