#include "model/quant_recipe.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace dsv3 {

namespace {

constexpr std::array<std::pair<QuantTarget, std::string_view>, 5> kNames{{
    {QuantTarget::Q8_0, "Q8_0"},
    {QuantTarget::Q6_K, "Q6_K"},
    {QuantTarget::Q4_K_M, "Q4_K_M"},
    {QuantTarget::Q2_K_XL, "Q2_K_XL"},
    {QuantTarget::BF16, "BF16"},
}};

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

// The name without "blk.<L>.": "attn_q_a.weight", "ffn_down_exps.weight", "nextn.eh_proj.weight".
std::string_view part_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return name;
  const size_t dot = name.find('.', 4);
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

// llama.cpp's tensor_type_fallback: a type whose blocks divide the row.
DType fallback(DType t, int64_t row) {
  if (row % dtype_block_elems(t) == 0) return t;
  switch (t) {
    case DType::Q2_K:
    case DType::Q3_K: t = DType::Q4_0; break;
    case DType::Q4_K: t = DType::Q5_0; break;
    case DType::Q5_K: t = DType::Q5_1; break;
    case DType::Q6_K: t = DType::Q8_0; break;
    default: break;
  }
  return row % dtype_block_elems(t) == 0 ? t : DType::F16;
}

// llama.cpp's Q4_K_M, with the token embedding and MLA's per-head up-projections (attn_k_b,
// attn_v_b) at Q6_K: on models/dsv3-kjv llama.cpp's recipe from the FP8 weights gives mean KL
// 6.6e-3 against the FP8 model (3.4e-3 from BF16-rounded weights: at 4 bits the outcome swings
// with the input's last bits), this one 2.3e-3. On DeepSeek-V3 they are 0.3% of the weights:
// about 0.5 GB more on ~380 GB.
DType q4_k_m(const RecipeTensor& t, std::string_view part) {
  if (part == "output.weight" || part == "nextn.shared_head_head.weight") return DType::Q6_K;
  if (part == "token_embd.weight" || part == "nextn.embed_tokens.weight") return DType::Q6_K;
  if (part == "attn_k_b.weight" || part == "attn_v_b.weight") return DType::Q6_K;
  if (part.substr(0, 8) == "ffn_down" && use_more_bits(t.layer, t.n_layers)) return DType::Q6_K;
  return DType::Q4_K;
}

DType q2_k_xl(const RecipeTensor& t, std::string_view part) {
  if (part == "output.weight" || part == "nextn.shared_head_head.weight") return DType::Q6_K;
  if (part == "token_embd.weight" || part == "nextn.embed_tokens.weight") return DType::Q6_K;
  if (contains(part, "_exps.")) {
    if (part.substr(0, 8) == "ffn_down" && use_more_bits(t.layer, t.n_layers)) return DType::Q3_K;
    return DType::Q2_K;
  }
  if (contains(part, "_shexp.")) return DType::Q6_K;
  if (part == "attn_k_b.weight" || part == "attn_v_b.weight" || part == "attn_kv_b.weight") return DType::Q6_K;
  return DType::Q4_K;
}

}  // namespace

std::string_view quant_target_name(QuantTarget t) {
  for (const auto& [k, n] : kNames)
    if (k == t) return n;
  return "?";
}

std::optional<QuantTarget> quant_target_from_name(std::string_view name) {
  for (const auto& [k, n] : kNames)
    if (std::equal(n.begin(), n.end(), name.begin(), name.end(),
                   [](char a, char b) { return a == std::toupper(static_cast<unsigned char>(b)); }))
      return k;
  return std::nullopt;
}

uint32_t quant_target_file_type(QuantTarget t) {
  switch (t) {  // llama.h enum llama_ftype
    case QuantTarget::Q8_0: return 7;
    case QuantTarget::Q6_K: return 18;
    case QuantTarget::Q4_K_M: return 15;
    case QuantTarget::Q2_K_XL: return 10;  // LLAMA_FTYPE_MOSTLY_Q2_K
    case QuantTarget::BF16: return 32;
  }
  return 0;
}

bool use_more_bits(int64_t layer, int64_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

DType recipe_type(QuantTarget target, const RecipeTensor& t) {
  const std::string_view part = part_of(t.name);
  if (t.rank < 2 || part == "ffn_gate_inp.weight" || part == "exp_probs_b.bias") return DType::F32;
  DType type = DType::Q8_0;
  switch (target) {
    case QuantTarget::BF16: return DType::BF16;
    case QuantTarget::Q8_0: type = DType::Q8_0; break;
    case QuantTarget::Q6_K: type = DType::Q6_K; break;
    case QuantTarget::Q4_K_M: type = q4_k_m(t, part); break;
    case QuantTarget::Q2_K_XL: type = q2_k_xl(t, part); break;
  }
  return fallback(type, t.row);
}

}  // namespace dsv3
