// The types `dsv3 quantize` writes, and the recipes that give each tensor of a DeepSeek model its
// ggml type: llama.cpp's llama_tensor_get_type for Q8_0, Q6_K and Q4_K_M, and a dynamic
// low-bit mix in the manner of unsloth's UD-Q2_K_XL. docs/gguf.md tabulates them.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/dtype.h"

namespace dsv3 {

enum class QuantTarget { Q8_0, Q6_K, Q4_K_M, Q2_K_XL, BF16 };

// "Q4_K_M", ...; parsing is case-insensitive.
std::string_view quant_target_name(QuantTarget t);
std::optional<QuantTarget> quant_target_from_name(std::string_view name);
// llama.cpp's llama_ftype for the file's general.file_type (Q2_K_XL is a Q2_K file, as unsloth's).
uint32_t quant_target_file_type(QuantTarget t);

// One tensor of the GGUF file, as a recipe sees it.
struct RecipeTensor {
  std::string_view name;  // GGUF name, "blk.3.ffn_down_exps.weight"
  int64_t layer = -1;     // blk number; -1 for token_embd, output and output_norm
  int64_t n_layers = 0;   // main layers (num_hidden_layers); the MTP layer is number n_layers
  int rank = 0;           // dimensions
  int64_t row = 0;        // values per row (ne0)
};

// The ggml type of `t` in a file of type `target`:
// - 1-D tensors, the router (ffn_gate_inp) and its bias (exp_probs_b): F32, as the converter
//   writes them and llama-quantize leaves them.
// - Q8_0 / Q6_K / BF16: every other tensor in that type.
// - Q4_K_M: llama.cpp's: Q4_K, except output Q6_K and ffn_down* (dense, shared and routed) Q6_K
//   in the layers llama.cpp's use_more_bits picks (the first and last eighth and every third
//   between); and, unlike llama.cpp, the token embedding and MLA's attn_k_b / attn_v_b Q6_K.
// - Q2_K_XL: routed experts Q2_K, their down projections Q3_K in use_more_bits layers; shared
//   experts, output and token embedding Q6_K; attention (MLA's k_b/v_b Q6_K), dense layers and
//   the MTP projection Q4_K.
// Then llama.cpp's fall-back for rows that are not whole blocks of 256 (tensor_type_fallback):
// Q2_K, Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 for rows not a multiple
// of 32 either.
DType recipe_type(QuantTarget target, const RecipeTensor& t);

// llama.cpp's use_more_bits(i_layer, n_layers).
bool use_more_bits(int64_t layer, int64_t n_layers);

}  // namespace dsv3
