// What llama.cpp calls things in a DeepSeek-V2/V3 GGUF file (architecture "deepseek2"): the
// tensor names beside the Hugging Face names, and the metadata keys beside ModelConfig's fields.
// The one place that knows them (the tensor table itself is io/gguf_tensor_names), for the
// reader (GGUF -> model) and the writer (dsv3 quantize).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/config.h"
#include "io/gguf.h"

namespace dsv3::gguf {

inline constexpr std::string_view kArch = "deepseek2";

// Where a Hugging Face tensor lives in a GGUF file.
struct TensorName {
  std::string name;     // GGUF tensor name, e.g. "blk.3.attn_q_a.weight"
  int64_t expert = -1;  // >= 0: expert `expert` of a stacked tensor, PyTorch shape [n_experts, out, in]
};

// The GGUF tensor of HF tensor `hf` (llama.cpp's convert_hf_to_gguf.py names):
//   model.embed_tokens.weight -> token_embd.weight, model.norm.weight -> output_norm.weight,
//   lm_head.weight -> output.weight, model.layers.L.<part> -> blk.L.<gguf part> (table in the
//   .cpp), mlp.experts.E.{gate,up,down}_proj.weight -> ffn_{gate,up,down}_exps.weight [E],
//   mlp.gate.e_score_correction_bias -> exp_probs_b.bias.
// The MTP module's own tensors (layer L = num_hidden_layers + k: embed_tokens, enorm, hnorm,
// eh_proj, shared_head.norm, shared_head.head) map to blk.L.nextn.* as llama.cpp names them for
// GLM-4.5 and DeepSeek; the module's block maps like any other layer.
// self_attn.kv_b_proj.weight maps to attn_kv_b, the layout before llama.cpp's MLA support
// (2025); files written since hold it split as kv_b_split_names instead. nullopt for names that
// have no GGUF counterpart (FP8 *_scale_inv).
std::optional<TensorName> tensor_name(std::string_view hf);

// llama.cpp's MLA layout of kv_b_proj [n_heads * (qk_nope + v_head), kv_lora_rank]:
//   attn_k_b: per head the key part transposed, PyTorch shape [n_heads, kv_lora_rank, qk_nope_head_dim]
//   attn_v_b: per head the value part,          PyTorch shape [n_heads, v_head_dim, kv_lora_rank]
struct KvBSplit {
  std::string k_b, v_b;
};
KvBSplit kv_b_split_names(int64_t layer);

// Metadata keys of the architecture, "deepseek2." + suffix.
std::string key(std::string_view suffix);

// ModelConfig from a deepseek2 file's metadata (every deepseek2.* key llama.cpp reads or
// writes; the table is in docs/gguf.md), validated like config.json. block_count counts the
// nextn_predict_layers MTP layers, as llama.cpp's converter writes it. The file's tensors decide
// what metadata does not say: `has_output` (an output.weight; without one the embedding is tied)
// and `has_score_bias` (exp_probs_b.bias: sigmoid routing with noaux_tc selection).
// Throws dsv3::Error naming the file and the key.
ModelConfig config_from_metadata(const GgufMetadata& md, bool has_output, bool has_score_bias);
// The same for an opened file.
ModelConfig config_from_gguf(const GgufModel& g);

// llama.cpp's llama_ftype for a file's general.file_type (the type most of its weights have).
enum class FileType : uint32_t { Q8_0 = 7, Q2_K = 10, Q4_K_M = 15, Q6_K = 18, BF16 = 32 };

// What a file says about itself beside the model's hyperparameters.
struct ModelInfo {
  std::string name;        // general.name, empty: not written
  std::string size_label;  // general.size_label ("256x20B"), empty: not written
  FileType file_type = FileType::Q8_0;
  // The file holds the multi-token-prediction layers: block_count counts them and
  // nextn_predict_layers says how many (llama.cpp's deepseek2 loader then reads them as
  // blk.{num_hidden_layers}.*), as convert_hf_to_gguf.py writes them unless --no-mtp.
  bool mtp = false;
};

// The general.* and deepseek2.* metadata llama.cpp's converter writes for config `c` (MLA
// layout; not the tokenizer), in its order and with its value types. Reading it back with
// config_from_metadata gives `c` again (except its FP8 and HF-only fields, and the MTP layers
// when `info.mtp` is false). The one list of these keys: `dsv3 quantize` writes it.
std::vector<std::pair<std::string, GgufValue>> metadata_from_config(const ModelConfig& c, const ModelInfo& info = {});

}  // namespace dsv3::gguf
