// `dsv3 convert`: rewrites an FP8 block-scaled checkpoint as BF16, the job of DeepSeek's
// inference/fp8_cast_bf16.py, streaming one tensor at a time from the mapped shards.
#pragma once
#include <cstdint>
#include <string>

namespace dsv3 {

struct ConvertOptions {
  std::string model_dir;  // Hugging Face checkpoint folder (config.json + safetensors)
  std::string out_dir;    // built beside it as <out_dir>.partial, renamed into place at the end
  bool force = false;     // replace an existing non-empty out_dir (never the input folder)
  bool progress = true;   // progress bar on stderr, in bytes written
};

struct ConvertStats {
  int64_t dequantized = 0;     // F8_E4M3 weights written as BF16
  int64_t copied = 0;          // tensors written as they were
  int64_t scales_dropped = 0;  // *_scale_inv tensors left out
  int64_t files_copied = 0;    // other files of the folder (tokenizer, generation config, ...)
  uint64_t bytes_in = 0, bytes_out = 0;  // tensor data read and written
};

// Every F8_E4M3 tensor W with a `W_scale_inv` companion ([ceil(rows / br), ceil(cols / bc)] F32
// block scales, br x bc from config.json's quantization_config.weight_block_size, 128 x 128 if
// absent) becomes BF16: W[r, c] = bf16(fp8(W[r, c]) * scale_inv[r / br, c / bc]), the product in
// float32 rounded to nearest even, as fp8_cast_bf16.py's weight_dequant. All *_scale_inv tensors
// are dropped; every other tensor is copied unchanged. Shards keep their file names (and hence
// their grouping), model.safetensors.index.json is rewritten when the input has one, config.json
// is the input's with quantization_config removed (all other keys kept), and the folder's other
// regular files (tokenizer.json, tokenizer_config.json, generation_config.json, ...) are copied.
// The output appears complete or not at all. Throws dsv3::Error on: a missing or invalid input,
// an FP8 weight without valid scales, out_dir being the input, out_dir non-empty without
// `force`, or a file that cannot be written.
ConvertStats convert_checkpoint_to_bf16(const ConvertOptions& opt);

}  // namespace dsv3
