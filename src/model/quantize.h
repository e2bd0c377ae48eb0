// `dsv3 quantize`: a DeepSeek-V2/V3 Hugging Face checkpoint (FP8 with block scales, or BF16)
// straight to a GGUF file that llama.cpp loads, streamed tensor by tensor from the mapped shards:
// no BF16 copy on disk, and memory bounded by a few chunks of rows.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "core/dtype.h"
#include "model/quant_recipe.h"

namespace dsv3 {

struct QuantizeOptions {
  std::string model_dir;  // Hugging Face checkpoint folder (config.json, safetensors, tokenizer)
  std::string out_path;   // the .gguf file, written atomically
  QuantTarget target = QuantTarget::Q8_0;
  // Keep the multi-token-prediction layer as llama.cpp's deepseek2 NextN layer (blk.<n>.*,
  // nextn_predict_layers = 1). Off: the file has the main layers only, as the converter writes.
  bool mtp = true;
  std::string tokenizer_pre;  // llama.cpp pre-tokenizer name; empty: recognised from tokenizer.json
  bool force = false;         // replace an existing out_path
  bool progress = true;       // progress bar on stderr, in bytes written
  int threads = 0;            // 0: all hardware threads
  // Polled between chunks of rows: when set, quantization stops with dsv3::Error "interrupted"
  // and nothing is left on disk (the CLI sets it on SIGINT / SIGTERM).
  const std::atomic<bool>* stop = nullptr;
};

struct QuantizeStats {
  int64_t tensors = 0;
  uint64_t params = 0;     // values written (the MTP layer's included when kept)
  uint64_t bytes_in = 0;   // checkpoint tensor bytes read
  uint64_t bytes_out = 0;  // tensor data written
  std::map<DType, int64_t> type_counts;
  double bits_per_weight() const { return params ? 8.0 * double(bytes_out) / double(params) : 0.0; }
};

// Writes the GGUF file: metadata as llama.cpp's convert_hf_to_gguf.py writes it for `deepseek2`
// (general.*, deepseek2.*, tokenizer.ggml.*, tokenizer.chat_template), tensors under its names
// and layouts (experts stacked, kv_b_proj split into attn_k_b / attn_v_b), each of the type
// recipe_type gives. FP8 weights are decoded with their block scales in float32 (no BF16
// rounding on the way). MTP copies of the embedding and output head that equal the main ones
// byte for byte are left out (llama.cpp falls back to the main ones). Throws dsv3::Error on: a
// missing or invalid input, a checkpoint tensor the GGUF format has no name for, shapes that
// disagree with config.json, an FP8 weight without valid scales, an existing out_path without
// `force`, a failed write, or `stop`.
QuantizeStats quantize_checkpoint(const QuantizeOptions& opt);

}  // namespace dsv3
