// The weights of a DeepSeek-V3 model as views into the checkpoint, named as in DeepSeek's
// inference/model.py (wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo, w1/w2/w3, ...).
// Shapes are the HF shapes [out, in].
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/gguf.h"
#include "kernels/matrix.h"

namespace dsv3 {

using kernels::Matrix;

struct MLAWeights {
  Matrix wq;        // q_proj [n_heads * qk_head_dim, dim]          (q_lora_rank == 0 only)
  Matrix wq_a;      // q_a_proj [q_lora_rank, dim]
  Matrix q_norm;    // q_a_layernorm [1, q_lora_rank]
  Matrix wq_b;      // q_b_proj [n_heads * qk_head_dim, q_lora_rank]
  Matrix wkv_a;     // kv_a_proj_with_mqa [kv_lora_rank + qk_rope_head_dim, dim]
  Matrix kv_norm;   // kv_a_layernorm [1, kv_lora_rank]
  Matrix wkv_b;     // kv_b_proj [n_heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank]
  Matrix wo;        // o_proj [dim, n_heads * v_head_dim]
  // kv_b_proj as llama.cpp's GGUF files since its MLA support store it, split per head; a
  // model has wkv_b, or both of these, or all three (mla.cpp uses whichever it has).
  Matrix wk_b;      // attn_k_b [n_heads * kv_lora_rank, qk_nope_head_dim]: head h's W_uk transposed
  Matrix wv_b;      // attn_v_b [n_heads * v_head_dim, kv_lora_rank]: head h's W_uv
  bool has_wkv_b() const { return wkv_b.data != nullptr; }
  bool has_split_kv_b() const { return wk_b.data != nullptr && wv_b.data != nullptr; }
};

struct MLPWeights {  // SwiGLU: w2(silu(w1 x) * w3 x)
  Matrix w1;  // gate_proj [inter, dim]
  Matrix w2;  // down_proj [dim, inter]
  Matrix w3;  // up_proj [inter, dim]
};

struct MoEWeights {
  Matrix gate;       // mlp.gate.weight [n_routed_experts, dim]
  Matrix gate_bias;  // mlp.gate.e_score_correction_bias [1, n_routed_experts] (noaux_tc only)
  std::vector<MLPWeights> experts;  // [n_routed_experts]; only [experts_begin, experts_end) bound
  int64_t experts_begin = 0, experts_end = 0;  // all experts, or this rank's block (model/partition.h)
  MLPWeights shared;  // n_shared_experts fused: inter = n_shared_experts * moe_intermediate_size
};

struct BlockWeights {
  Matrix attn_norm;  // input_layernorm [1, dim]
  Matrix ffn_norm;   // post_attention_layernorm [1, dim]
  MLAWeights attn;
  bool is_moe = false;
  MLPWeights mlp;  // dense layers
  MoEWeights moe;  // MoE layers
};

// The Multi-Token-Prediction module (model.layers.{num_hidden_layers + k}).
struct MTPWeights {
  Matrix embed;        // embed_tokens [vocab, dim] (copy of the main embedding)
  Matrix enorm, hnorm; // [1, dim]
  Matrix eh_proj;      // [dim, 2 * dim]: input is concat(enorm(embed), hnorm(h))
  BlockWeights block;
  Matrix head_norm;    // shared_head.norm [1, dim]
  Matrix head;         // shared_head.head [vocab, dim]
};

struct ModelWeights {
  Matrix embed;  // model.embed_tokens [vocab, dim]
  std::vector<BlockWeights> layers;
  Matrix norm;  // model.norm [1, dim]
  Matrix head;  // lm_head [vocab, dim]
  std::vector<MTPWeights> mtp;  // empty when the checkpoint has none
  // Rank-local copies some views point into (a rank's slices of wo and w2; model/partition.h).
  std::vector<std::shared_ptr<const void>> storage;
};

// What a tensor is, for loading rules (which dtypes are allowed) and parameter accounting.
enum class TensorKind { Embedding, Norm, Linear, Gate, GateBias, Head };

struct TensorSpec {
  std::string name;  // HF name
  Shape shape;       // HF shape
  TensorKind kind;
  int64_t layer = -1;  // -1: not in a layer
  bool mtp = false;    // part of an MTP module
  int64_t expert = -1; // routed expert index, -1 otherwise
  Matrix* slot = nullptr;  // where it goes in ModelWeights (null when visiting without weights)
};

// Visits every tensor a checkpoint of config `c` holds, once, in a fixed order: the single list
// that drives loading, synthesis and parameter counting. MTP modules are visited when
// `include_mtp`. When `w` is non-null, its layer vectors are sized and each spec's slot points
// into it.
void visit_tensors(const ModelConfig& c, bool include_mtp, ModelWeights* w,
                   const std::function<void(const TensorSpec&)>& fn);

// Calls fn on every weight view `w` holds (the bound ones: a rank's share on one of several
// ranks), in no particular order: for paging in or accounting for a model's weights.
void for_each_weight(const ModelWeights& w, const std::function<void(const Matrix&)>& fn);

// Binds every tensor of the checkpoint to its slot, checking dtype, shape and FP8 block scales.
// MTP weights are bound when present (all of them) and `load_mtp`. Tensors the model does not
// know are an error. Throws dsv3::Error naming the file, the tensor and what is wrong.
ModelWeights load_weights(const Checkpoint& ck, const ModelConfig& c, bool load_mtp = true);

// The same from a GGUF file of architecture deepseek2 (names in io/gguf_names.h): HF shapes are
// the file's dims reversed, stacked experts are row ranges of their ffn_*_exps tensor, and
// kv_b_proj binds as wkv_b (attn_kv_b) and/or wk_b + wv_b (attn_k_b, attn_v_b). Every tensor of
// the file must be used. Throws dsv3::Error naming the file, the tensor and what is wrong.
ModelWeights load_weights(const GgufModel& g, const ModelConfig& c, bool load_mtp = true);

}  // namespace dsv3
