// The GGUF metadata llama.cpp's convert_hf_to_gguf.py writes for a DeepSeek-V2/V3 Hugging Face
// checkpoint (architecture `deepseek2`): the model's hyperparameters as deepseek2.* keys and the
// tokenizer as tokenizer.ggml.* keys, built from config.json, tokenizer.json and
// tokenizer_config.json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"

namespace dsv3 {

class GgufWriter;

// llama.cpp's llama_ftype for a file's general.file_type (the type most of its weights have).
enum class GgufFileType : uint32_t { Q8_0 = 7, Q2_K = 10, Q4_K_M = 15, Q6_K = 18, BF16 = 32 };

struct GgufModelInfo {
  std::string name;        // general.name
  std::string size_label;  // general.size_label ("256x20B"), empty: not written
  GgufFileType file_type = GgufFileType::Q8_0;
  // The multi-token-prediction layer is kept: block_count counts it and nextn_predict_layers
  // says so (llama.cpp's deepseek2 loader then reads it as blk.{num_hidden_layers}.*).
  bool mtp = false;
};

// general.* and deepseek2.* keys for `config`, in the converter's order.
void add_deepseek2_metadata(GgufWriter& w, const ModelConfig& config, const GgufModelInfo& info);

// gguf-py's size label: "<n_experts>x<shared + one expert's parameters>" for MoE models
// ("16x2.8M"), else the total ("671B"), with at least two significant digits. `shared_params`
// counts every parameter outside the routed experts, `expert_params` one expert's (all layers).
std::string gguf_size_label(uint64_t shared_params, uint64_t expert_params, int64_t n_experts);

}  // namespace dsv3
