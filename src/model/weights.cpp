#include "model/weights.h"

#include <set>

#include "core/error.h"

namespace dsv3 {

namespace {

struct Visitor {
  const ModelConfig& c;
  ModelWeights* w;
  const std::function<void(const TensorSpec&)>& fn;

  void emit(const std::string& name, Shape shape, TensorKind kind, Matrix* slot, int64_t layer, bool mtp,
            int64_t expert = -1) {
    fn(TensorSpec{name, shape, kind, layer, mtp, expert, w ? slot : nullptr});
  }

  void mlp(const std::string& p, int64_t inter, MLPWeights* m, int64_t layer, bool mtp, int64_t expert = -1) {
    const int64_t dim = c.hidden_size;
    emit(p + "gate_proj.weight", {inter, dim}, TensorKind::Linear, m ? &m->w1 : nullptr, layer, mtp, expert);
    emit(p + "up_proj.weight", {inter, dim}, TensorKind::Linear, m ? &m->w3 : nullptr, layer, mtp, expert);
    emit(p + "down_proj.weight", {dim, inter}, TensorKind::Linear, m ? &m->w2 : nullptr, layer, mtp, expert);
  }

  void block(const std::string& p, int64_t layer, BlockWeights* b, bool mtp) {
    const int64_t dim = c.hidden_size, nh = c.num_attention_heads;
    auto slot = [&](Matrix& m) { return b ? &m : nullptr; };
    emit(p + "input_layernorm.weight", {dim}, TensorKind::Norm, b ? &b->attn_norm : nullptr, layer, mtp);
    MLAWeights* a = b ? &b->attn : nullptr;
    const std::string s = p + "self_attn.";
    if (c.q_lora_rank == 0) {
      emit(s + "q_proj.weight", {nh * c.qk_head_dim(), dim}, TensorKind::Linear, a ? slot(a->wq) : nullptr, layer, mtp);
    } else {
      emit(s + "q_a_proj.weight", {c.q_lora_rank, dim}, TensorKind::Linear, a ? slot(a->wq_a) : nullptr, layer, mtp);
      emit(s + "q_a_layernorm.weight", {c.q_lora_rank}, TensorKind::Norm, a ? slot(a->q_norm) : nullptr, layer, mtp);
      emit(s + "q_b_proj.weight", {nh * c.qk_head_dim(), c.q_lora_rank}, TensorKind::Linear,
           a ? slot(a->wq_b) : nullptr, layer, mtp);
    }
    emit(s + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, dim}, TensorKind::Linear,
         a ? slot(a->wkv_a) : nullptr, layer, mtp);
    emit(s + "kv_a_layernorm.weight", {c.kv_lora_rank}, TensorKind::Norm, a ? slot(a->kv_norm) : nullptr, layer, mtp);
    emit(s + "kv_b_proj.weight", {nh * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}, TensorKind::Linear,
         a ? slot(a->wkv_b) : nullptr, layer, mtp);
    emit(s + "o_proj.weight", {dim, nh * c.v_head_dim}, TensorKind::Linear, a ? slot(a->wo) : nullptr, layer, mtp);
    emit(p + "post_attention_layernorm.weight", {dim}, TensorKind::Norm, b ? &b->ffn_norm : nullptr, layer, mtp);

    const std::string m = p + "mlp.";
    if (!c.is_moe_layer(layer)) {
      mlp(m, c.intermediate_size, b ? &b->mlp : nullptr, layer, mtp);
      return;
    }
    MoEWeights* moe = nullptr;
    if (b) {
      b->is_moe = true;
      moe = &b->moe;
      moe->experts.resize(size_t(c.n_routed_experts));
      moe->experts_end = c.n_routed_experts;
    }
    emit(m + "gate.weight", {c.n_routed_experts, dim}, TensorKind::Gate, moe ? &moe->gate : nullptr, layer, mtp);
    if (c.has_score_bias())
      emit(m + "gate.e_score_correction_bias", {c.n_routed_experts}, TensorKind::GateBias,
           moe ? &moe->gate_bias : nullptr, layer, mtp);
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      mlp(m + "experts." + std::to_string(e) + ".", c.moe_intermediate_size,
          moe ? &moe->experts[size_t(e)] : nullptr, layer, mtp, e);
    if (c.n_shared_experts > 0)
      mlp(m + "shared_experts.", c.n_shared_experts * c.moe_intermediate_size, moe ? &moe->shared : nullptr, layer, mtp);
  }
};

std::string layer_prefix(int64_t i) { return "model.layers." + std::to_string(i) + "."; }

}  // namespace

void visit_tensors(const ModelConfig& c, bool include_mtp, ModelWeights* w,
                   const std::function<void(const TensorSpec&)>& fn) {
  Visitor v{c, w, fn};
  const int64_t dim = c.hidden_size, vocab = c.vocab_size;
  if (w) w->layers.assign(size_t(c.num_hidden_layers), BlockWeights{});
  v.emit("model.embed_tokens.weight", {vocab, dim}, TensorKind::Embedding, w ? &w->embed : nullptr, -1, false);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    v.block(layer_prefix(i), i, w ? &w->layers[size_t(i)] : nullptr, false);
  v.emit("model.norm.weight", {dim}, TensorKind::Norm, w ? &w->norm : nullptr, -1, false);
  if (!c.tie_word_embeddings)
    v.emit("lm_head.weight", {vocab, dim}, TensorKind::Head, w ? &w->head : nullptr, -1, false);
  if (!include_mtp) return;
  if (w) w->mtp.assign(size_t(c.num_nextn_predict_layers), MTPWeights{});
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    const int64_t layer = c.num_hidden_layers + k;
    const std::string p = layer_prefix(layer);
    MTPWeights* m = w ? &w->mtp[size_t(k)] : nullptr;
    v.emit(p + "embed_tokens.weight", {vocab, dim}, TensorKind::Embedding, m ? &m->embed : nullptr, layer, true);
    v.emit(p + "enorm.weight", {dim}, TensorKind::Norm, m ? &m->enorm : nullptr, layer, true);
    v.emit(p + "hnorm.weight", {dim}, TensorKind::Norm, m ? &m->hnorm : nullptr, layer, true);
    v.emit(p + "eh_proj.weight", {dim, 2 * dim}, TensorKind::Linear, m ? &m->eh_proj : nullptr, layer, true);
    v.block(p, layer, m ? &m->block : nullptr, true);
    v.emit(p + "shared_head.norm.weight", {dim}, TensorKind::Norm, m ? &m->head_norm : nullptr, layer, true);
    v.emit(p + "shared_head.head.weight", {vocab, dim}, TensorKind::Head, m ? &m->head : nullptr, layer, true);
  }
}

namespace {

bool float_dtype(DType d) { return d == DType::F32 || d == DType::BF16 || d == DType::F16; }

Matrix bind(const Checkpoint& ck, const ModelConfig& c, const TensorSpec& s) {
  const TensorView t = ck.get(s.name);
  const std::string where = ck.file_of(s.name) + ": tensor '" + s.name + "'";
  DSV3_CHECK(t.shape == s.shape, where, ": shape ", t.shape.str(), " does not match the config (expected ",
             s.shape.str(), ")");
  const std::string scale_name = s.name + "_scale_inv";
  Matrix m;
  m.dtype = t.dtype;
  m.rows = s.shape.rank == 1 ? 1 : s.shape[0];
  m.cols = s.shape.rank == 1 ? s.shape[0] : s.shape[1];
  m.data = t.data;
  if (t.dtype == DType::F8_E4M3) {
    DSV3_CHECK(s.kind == TensorKind::Linear, where, ": dtype F8_E4M3 is only supported for linear weights");
    DSV3_CHECK(ck.has(scale_name), where, ": FP8 weight without its block scales '", scale_name, "'");
    const TensorView sc = ck.get(scale_name);
    const std::string swhere = ck.file_of(scale_name) + ": tensor '" + scale_name + "'";
    DSV3_CHECK(sc.dtype == DType::F32, swhere, ": dtype ", dtype_name(sc.dtype), ", expected F32");
    const int64_t br = c.weight_block_rows, bc = c.weight_block_cols;
    const Shape want{(m.rows + br - 1) / br, (m.cols + bc - 1) / bc};
    DSV3_CHECK(sc.shape == want, swhere, ": shape ", sc.shape.str(), ", expected ", want.str(), " for ",
               s.shape.str(), " in ", br, "x", bc, " blocks");
    m.scale = sc.as<float>();
    m.scale_cols = want[1];
    m.block_rows = br;
    m.block_cols = bc;
  } else {
    DSV3_CHECK(float_dtype(t.dtype), where, ": dtype ", dtype_name(t.dtype), " is not supported here (F32, BF16, F16",
               s.kind == TensorKind::Linear ? " or F8_E4M3)" : ")");
    DSV3_CHECK(!ck.has(scale_name), where, ": has block scales '", scale_name, "' but is not F8_E4M3");
  }
  return m;
}

}  // namespace

namespace {
void for_each_in_block(const BlockWeights& b, const std::function<void(const Matrix&)>& fn) {
  const MLAWeights& a = b.attn;
  for (const Matrix* m : {&b.attn_norm, &b.ffn_norm, &a.wq, &a.wq_a, &a.q_norm, &a.wq_b, &a.wkv_a, &a.kv_norm, &a.wkv_b,
                          &a.wo, &a.wk_b, &a.wv_b})
    fn(*m);
  auto mlp = [&](const MLPWeights& p) {
    fn(p.w1);
    fn(p.w2);
    fn(p.w3);
  };
  mlp(b.mlp);
  fn(b.moe.gate);
  fn(b.moe.gate_bias);
  for (int64_t e = b.moe.experts_begin; e < b.moe.experts_end; ++e) mlp(b.moe.experts[size_t(e)]);
  mlp(b.moe.shared);
}
}  // namespace

void for_each_weight(const ModelWeights& w, const std::function<void(const Matrix&)>& fn) {
  auto bound = [&](const Matrix& m) {
    if (m.data != nullptr) fn(m);
  };
  bound(w.embed);
  for (const BlockWeights& b : w.layers) for_each_in_block(b, bound);
  bound(w.norm);
  bound(w.head);
  for (const MTPWeights& m : w.mtp) {
    for (const Matrix* x : {&m.embed, &m.enorm, &m.hnorm, &m.eh_proj, &m.head_norm, &m.head}) bound(*x);
    for_each_in_block(m.block, bound);
  }
}

ModelWeights load_weights(const Checkpoint& ck, const ModelConfig& c, bool load_mtp) {
  ModelWeights w;
  std::set<std::string> used;
  // MTP tensors present in the file must all be present to be used; absent ones simply mean no MTP.
  const bool has_mtp = c.num_nextn_predict_layers > 0 &&
                       ck.has("model.layers." + std::to_string(c.num_hidden_layers) + ".eh_proj.weight");
  visit_tensors(c, has_mtp, &w, [&](const TensorSpec& s) {
    if (s.mtp && !load_mtp) {  // recognised, not bound: still accounted as known
      used.insert(s.name);
      used.insert(s.name + "_scale_inv");
      return;
    }
    *s.slot = bind(ck, c, s);
    used.insert(s.name);
    if (s.slot->quantized()) used.insert(s.name + "_scale_inv");
  });
  if (!has_mtp) w.mtp.clear();
  if (!load_mtp) w.mtp.clear();
  for (const auto& [name, loc] : ck.tensors())
    DSV3_CHECK(used.count(name), loc.file->path(), ": tensor '", name,
               "' is not part of a model with this config.json (wrong config, or a different architecture?)");
  if (c.tie_word_embeddings) w.head = w.embed;
  return w;
}

}  // namespace dsv3
