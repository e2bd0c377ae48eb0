// The one table between the Hugging Face tensor names of DeepSeek-V2/V3 checkpoints and the names
// llama.cpp gives them in GGUF files of architecture `deepseek2` (convert_hf_to_gguf.py's
// DeepseekV2Model with gguf-py's tensor_mapping.py), with each GGUF tensor's layout. `dsv3
// quantize` writes through it and the GGUF reader (io/gguf_names) reads through it.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace dsv3 {

// How a GGUF tensor's values relate to its HF tensor's. Every layout also reverses the dimension
// order (ggml's ne0 is PyTorch's last dimension), which leaves the bytes of a plain tensor as they
// are: an HF weight [out, in] is the GGUF tensor {ne0 = in, ne1 = out}.
enum class GgufLayout : uint8_t {
  Same,         // the same values
  Experts,      // mlp.experts.{E}.X [out, in] of every expert E stacked: [n_experts, out, in]
  KvBKeys,      // attn_k_b: kv_b_proj [heads * (nope + v), rank] viewed [heads, nope + v, rank],
                // rows [0, nope) of each head, transposed: [heads, rank, nope]
  KvBValues,    // attn_v_b: rows [nope, nope + v) of each head: [heads, v, rank]
};

struct GgufTensorName {
  // "{L}" stands for the layer number, "{E}" for the expert number (Experts layout only).
  std::string_view hf;
  std::string_view gguf;
  GgufLayout layout;
  // Only in the multi-token-prediction layer (layer number num_hidden_layers), which llama.cpp
  // keeps in the same blk.{L} numbering with nextn_predict_layers = 1.
  bool mtp_only = false;
};

// Every row, global tensors first. kv_b_proj appears three times: as attn_kv_b (files written
// before llama.cpp split MLA's up-projection, still read), attn_k_b and attn_v_b (what the
// converter writes now, and what `dsv3 quantize` writes).
std::span<const GgufTensorName> gguf_tensor_names();

// A name matched against the table: the row and the numbers its placeholders stood for
// (-1 where the row has none).
struct GgufNameMatch {
  const GgufTensorName* row = nullptr;
  int64_t layer = -1;
  int64_t expert = -1;
};

// The row an HF tensor name belongs to; for kv_b_proj the attn_kv_b row (callers that split it
// use the KvBKeys / KvBValues rows). nullopt for names outside the table (e.g. *_scale_inv).
std::optional<GgufNameMatch> match_hf_tensor_name(std::string_view hf);
// The row a GGUF tensor name belongs to; nullopt for names outside the table.
std::optional<GgufNameMatch> match_gguf_tensor_name(std::string_view gguf);

// The row's names with the placeholders filled in (expert ignored where the name has none).
std::string gguf_tensor_name(const GgufTensorName& row, int64_t layer = -1);
std::string hf_tensor_name(const GgufTensorName& row, int64_t layer = -1, int64_t expert = -1);

}  // namespace dsv3
