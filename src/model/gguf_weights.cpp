// Binding a deepseek2 GGUF file's tensors to the model's weights: the same visit over HF names
// as a safetensors checkpoint (visit_tensors), each name looked up through io/gguf_names.
#include <map>
#include <set>

#include "core/error.h"
#include "io/gguf_names.h"
#include "model/weights.h"

namespace dsv3 {

namespace {

bool float_dtype(DType d) { return d == DType::F32 || d == DType::BF16 || d == DType::F16; }

// Activations per GGUF tensor type under the default kernels, chosen by measurement on llama.cpp's
// kjv files against their exact-dequant logits (issue 18: at most half of llama.cpp's mean KL,
// top-1 agreement at least its; docs/gguf.md has the figures):
//   F32, F16      float32 (every variant multiplies these with float32 activations)
//   BF16          float32: rounded to BF16 (avx512bf16's VDPBF16PS, as llama.cpp does) they cost
//                 mean KL 3.6e-6, llama.cpp's own distance; float32 ones leave ~1e-13
//   Q8_0, Q4_0/1, int16 per 256 columns (kernels/simd/qblocks.h) on every variant: ~1.5e-8,
//   Q5_0/1, K     where llama.cpp's 8-bit activations cost 2.3e-4 (Q8_0) to 3.5e-3 (Q4_K_M)
bool gguf_f32_activations(DType d) { return d == DType::BF16; }

class GgufBinder {
 public:
  GgufBinder(const GgufModel& g) : g_(g) {}

  // The whole tensor `name` as a [rows, cols] matrix of its own type, its PyTorch shape checked
  // against `want` (rows x cols being the product of all but the last dim, and the last).
  Matrix bind(const std::string& name, const Shape& want, TensorKind kind, const std::string& hf) {
    const GgufModel::Location& loc = g_.get(name);
    const GgufTensorInfo& t = *loc.info;
    const std::string where = loc.file->path() + ": tensor '" + name + "'";
    const Shape shape = t.torch_shape();
    DSV3_CHECK(shape == want, where, " (", hf, "): shape ", shape.str(), " does not match the metadata (expected ",
               want.str(), ")");
    const auto dt = dtype_from_ggml_type(t.type.id);
    DSV3_CHECK(dt.has_value() && (float_dtype(*dt) || dtype_is_block(*dt)), where, ": type ", t.type.name,
               " is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K-Q6_K)");
    const bool matrix_kind = kind == TensorKind::Linear || kind == TensorKind::Embedding ||
                             kind == TensorKind::Head || kind == TensorKind::Gate;
    DSV3_CHECK(matrix_kind || float_dtype(*dt), where, ": type ", t.type.name,
               " is not supported for norms and biases (F32, F16 or BF16)");
    used_.insert(name);
    Matrix m;
    m.dtype = *dt;
    m.cols = t.ne[0];
    m.rows = t.ne.numel() / std::max<int64_t>(1, t.ne[0]);
    m.data = loc.file->data(t);
    m.f32_activations = gguf_f32_activations(m.dtype);
    return m;
  }

  // Expert `e` of the stacked tensor `name`, PyTorch shape [n_experts, out, in]: rows
  // [e * out, (e + 1) * out) of the whole, a view.
  Matrix bind_expert(const std::string& name, int64_t e, int64_t n_experts, const Shape& want, const std::string& hf) {
    auto it = stacked_.find(name);
    if (it == stacked_.end())
      it = stacked_.emplace(name, bind(name, Shape{n_experts, want[0], want[1]}, TensorKind::Linear, hf)).first;
    return it->second.row_slice(e * want[0], want[0]);
  }

  const std::set<std::string>& used() const { return used_; }

 private:
  const GgufModel& g_;
  std::set<std::string> used_;
  std::map<std::string, Matrix> stacked_;
};

}  // namespace

ModelWeights load_weights(const GgufModel& g, const ModelConfig& c, bool load_mtp) {
  ModelWeights w;
  GgufBinder b(g);
  const bool has_mtp = c.num_nextn_predict_layers > 0 &&
                       g.has("blk." + std::to_string(c.num_hidden_layers) + ".nextn.eh_proj.weight");
  const int64_t nh = c.num_attention_heads, rank = c.kv_lora_rank;
  std::vector<std::pair<int64_t, std::string>> kv_b;  // (layer, HF name) bound after the visit
  std::set<std::string> skipped;                     // MTP tensors recognised but not loaded
  visit_tensors(c, has_mtp, &w, [&](const TensorSpec& s) {
    const auto name = gguf::tensor_name(s.name);
    DSV3_ASSERT(name.has_value());
    if (s.mtp && !load_mtp) {
      skipped.insert(name->name);
      if (s.name.find("kv_b_proj") != std::string::npos) {
        const auto split = gguf::kv_b_split_names(s.layer);
        skipped.insert({split.k_b, split.v_b});
      }
      return;
    }
    if (s.mtp && (s.kind == TensorKind::Embedding || s.kind == TensorKind::Head) && !g.has(name->name)) {
      // The MTP layer's embedding and head are copies of the main ones in DeepSeek's checkpoints;
      // llama.cpp's converter and `dsv3 quantize` leave them out, and the main ones stand in.
      const bool embed = s.kind == TensorKind::Embedding || !g.has("output.weight");
      *s.slot = b.bind(embed ? "token_embd.weight" : "output.weight", s.shape, s.kind, s.name);
      return;
    }
    if (s.name.ends_with("self_attn.kv_b_proj.weight")) {
      kv_b.emplace_back(s.layer, s.name);
      return;
    }
    *s.slot = name->expert >= 0 ? b.bind_expert(name->name, name->expert, c.n_routed_experts, s.shape, s.name)
                                : b.bind(name->name, s.shape, s.kind, s.name);
  });
  for (const auto& [layer, hf] : kv_b) {
    MLAWeights& a = layer < c.num_hidden_layers ? w.layers[size_t(layer)].attn
                                                : w.mtp[size_t(layer - c.num_hidden_layers)].block.attn;
    const std::string fused = gguf::tensor_name(hf)->name;
    const auto split = gguf::kv_b_split_names(layer);
    if (g.has(fused))
      a.wkv_b = b.bind(fused, {nh * (c.qk_nope_head_dim + c.v_head_dim), rank}, TensorKind::Linear, hf);
    if (g.has(split.k_b) || g.has(split.v_b)) {
      a.wk_b = b.bind(split.k_b, {nh, rank, c.qk_nope_head_dim}, TensorKind::Linear, hf);
      a.wv_b = b.bind(split.v_b, {nh, c.v_head_dim, rank}, TensorKind::Linear, hf);
    }
    DSV3_CHECK(a.has_wkv_b() || a.has_split_kv_b(), g.path(), ": layer ", layer, " has neither '", fused,
               "' nor '", split.k_b, "' and '", split.v_b, "'");
  }
  if (!has_mtp || !load_mtp) w.mtp.clear();
  for (const auto& [name, loc] : g.tensors())
    DSV3_CHECK(b.used().count(name) || skipped.count(name), loc.file->path(), ": tensor '", name,
               "' is not part of a deepseek2 model with this metadata (wrong metadata, or a different architecture?)");
  if (c.tie_word_embeddings) w.head = w.embed;
  return w;
}

}  // namespace dsv3
