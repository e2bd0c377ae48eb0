#include "io/gguf_tensor_names.h"

#include <array>
#include <cctype>

namespace dsv3 {

namespace {

using L = GgufLayout;

// gguf-py's tensor_mapping.py for MODEL_ARCH.DEEPSEEK2, and the MTP (NextN) names of
// MODEL_TENSOR.NEXTN_* that llama.cpp's deepseek2 loader reads in layer n_layer.
constexpr std::array<GgufTensorName, 32> kNames{{
    {"model.embed_tokens.weight", "token_embd.weight", L::Same},
    {"model.norm.weight", "output_norm.weight", L::Same},
    {"lm_head.weight", "output.weight", L::Same},
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", L::Same},
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", L::Same},
    {"model.layers.{L}.self_attn.q_a_proj.weight", "blk.{L}.attn_q_a.weight", L::Same},
    {"model.layers.{L}.self_attn.q_a_layernorm.weight", "blk.{L}.attn_q_a_norm.weight", L::Same},
    {"model.layers.{L}.self_attn.q_b_proj.weight", "blk.{L}.attn_q_b.weight", L::Same},
    {"model.layers.{L}.self_attn.kv_a_proj_with_mqa.weight", "blk.{L}.attn_kv_a_mqa.weight", L::Same},
    {"model.layers.{L}.self_attn.kv_a_layernorm.weight", "blk.{L}.attn_kv_a_norm.weight", L::Same},
    {"model.layers.{L}.self_attn.kv_b_proj.weight", "blk.{L}.attn_kv_b.weight", L::Same},
    {"model.layers.{L}.self_attn.kv_b_proj.weight", "blk.{L}.attn_k_b.weight", L::KvBKeys},
    {"model.layers.{L}.self_attn.kv_b_proj.weight", "blk.{L}.attn_v_b.weight", L::KvBValues},
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", L::Same},
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight", L::Same},
    {"model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", L::Same},
    {"model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", L::Same},
    {"model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", L::Same},
    {"model.layers.{L}.mlp.gate.weight", "blk.{L}.ffn_gate_inp.weight", L::Same},
    {"model.layers.{L}.mlp.gate.e_score_correction_bias", "blk.{L}.exp_probs_b.bias", L::Same},
    {"model.layers.{L}.mlp.experts.{E}.gate_proj.weight", "blk.{L}.ffn_gate_exps.weight", L::Experts},
    {"model.layers.{L}.mlp.experts.{E}.up_proj.weight", "blk.{L}.ffn_up_exps.weight", L::Experts},
    {"model.layers.{L}.mlp.experts.{E}.down_proj.weight", "blk.{L}.ffn_down_exps.weight", L::Experts},
    {"model.layers.{L}.mlp.shared_experts.gate_proj.weight", "blk.{L}.ffn_gate_shexp.weight", L::Same},
    {"model.layers.{L}.mlp.shared_experts.up_proj.weight", "blk.{L}.ffn_up_shexp.weight", L::Same},
    {"model.layers.{L}.mlp.shared_experts.down_proj.weight", "blk.{L}.ffn_down_shexp.weight", L::Same},
    {"model.layers.{L}.eh_proj.weight", "blk.{L}.nextn.eh_proj.weight", L::Same, true},
    {"model.layers.{L}.enorm.weight", "blk.{L}.nextn.enorm.weight", L::Same, true},
    {"model.layers.{L}.hnorm.weight", "blk.{L}.nextn.hnorm.weight", L::Same, true},
    {"model.layers.{L}.embed_tokens.weight", "blk.{L}.nextn.embed_tokens.weight", L::Same, true},
    {"model.layers.{L}.shared_head.head.weight", "blk.{L}.nextn.shared_head_head.weight", L::Same, true},
    {"model.layers.{L}.shared_head.norm.weight", "blk.{L}.nextn.shared_head_norm.weight", L::Same, true},
}};

// Matches `name` against `pattern`, whose "{L}" / "{E}" match a decimal number without leading
// zeros (so "blk.01" is not layer 1 and every number has one spelling).
bool match(std::string_view pattern, std::string_view name, int64_t& layer, int64_t& expert) {
  size_t p = 0, n = 0;
  while (p < pattern.size()) {
    if (pattern.compare(p, 3, "{L}") == 0 || pattern.compare(p, 3, "{E}") == 0) {
      const bool is_layer = pattern[p + 1] == 'L';
      size_t end = n;
      while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end])) && end - n < 9) ++end;
      if (end == n || (name[n] == '0' && end - n > 1)) return false;
      if (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) return false;
      int64_t v = 0;
      for (size_t i = n; i < end; ++i) v = v * 10 + (name[i] - '0');
      (is_layer ? layer : expert) = v;
      n = end;
      p += 3;
      continue;
    }
    if (n >= name.size() || pattern[p] != name[n]) return false;
    ++p;
    ++n;
  }
  return n == name.size();
}

std::string fill(std::string_view pattern, int64_t layer, int64_t expert) {
  std::string out;
  for (size_t p = 0; p < pattern.size();) {
    if (pattern.compare(p, 3, "{L}") == 0) {
      out += std::to_string(layer);
      p += 3;
    } else if (pattern.compare(p, 3, "{E}") == 0) {
      out += std::to_string(expert);
      p += 3;
    } else {
      out += pattern[p++];
    }
  }
  return out;
}

}  // namespace

std::span<const GgufTensorName> gguf_tensor_names() { return kNames; }

std::optional<GgufNameMatch> match_hf_tensor_name(std::string_view hf) {
  for (const GgufTensorName& row : gguf_tensor_names()) {
    if (row.layout == GgufLayout::KvBKeys || row.layout == GgufLayout::KvBValues) continue;
    GgufNameMatch m{&row};
    if (match(row.hf, hf, m.layer, m.expert)) return m;
  }
  return std::nullopt;
}

std::optional<GgufNameMatch> match_gguf_tensor_name(std::string_view gguf) {
  for (const GgufTensorName& row : gguf_tensor_names()) {
    GgufNameMatch m{&row};
    if (match(row.gguf, gguf, m.layer, m.expert)) return m;
  }
  return std::nullopt;
}

std::string gguf_tensor_name(const GgufTensorName& row, int64_t layer) { return fill(row.gguf, layer, -1); }

std::string hf_tensor_name(const GgufTensorName& row, int64_t layer, int64_t expert) {
  return fill(row.hf, layer, expert);
}

}  // namespace dsv3
