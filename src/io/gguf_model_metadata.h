// The GGUF metadata llama.cpp's convert_hf_to_gguf.py writes for a DeepSeek-V2/V3 Hugging Face
// checkpoint (architecture `deepseek2`): the model's hyperparameters as deepseek2.* keys and the
// tokenizer as tokenizer.ggml.* keys, built from config.json, tokenizer.json and
// tokenizer_config.json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/gguf_names.h"

namespace dsv3 {

class GgufWriter;

// general.* and deepseek2.* keys for `config`, in the converter's order: gguf::metadata_from_config.
void add_deepseek2_metadata(GgufWriter& w, const ModelConfig& config, const gguf::ModelInfo& info);

// gguf-py's size label: "<n_experts>x<shared + one expert's parameters>" for MoE models
// ("16x2.8M"), else the total ("671B"), with at least two significant digits. `shared_params`
// counts every parameter outside the routed experts, `expert_params` one expert's (all layers).
std::string gguf_size_label(uint64_t shared_params, uint64_t expert_params, int64_t n_experts);

}  // namespace dsv3
