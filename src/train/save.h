// Checkpoints: the trained weights as a Hugging Face DeepSeek-V3 folder (config.json,
// model.safetensors with the real tensor names, index, tokenizer files) in F32, BF16 or FP8
// e4m3 with 128x128 weight_scale_inv blocks, and beside them in the same folder the resumable
// training state (master weights, Adam moments, step, seed). The folder is built next to its
// target and swapped in atomically, so an interrupted save never leaves a half-written one.
#pragma once
#include <cstdint>
#include <string>

#include "train/optimizer.h"
#include "train/params.h"

namespace dsv3::train {

enum class SaveDType { F32, BF16, FP8 };
SaveDType parse_save_dtype(const std::string& s);  // "f32", "bf16", "fp8"

struct CheckpointFiles {
  std::string tokenizer_json, tokenizer_config_json;  // contents; empty: not written
  std::string readme;
};

struct TrainState {
  int64_t step = 0;          // steps completed
  uint64_t seed = 0;
  std::string options_json;  // the run's settings, checked on resume
};

// Writes `dir` (replacing an existing checkpoint folder atomically).
void save_checkpoint(const std::string& dir, const Params<float>& p, const AdamW& opt, const TrainState& st,
                     SaveDType dtype, const CheckpointFiles& files);

// Rounds p.data in place to what a checkpoint of `dtype` stores (BF16 rounding, or FP8 block
// quantization of linear weights): the weights the inference engine will see.
void round_to_saved(Params<float>& p, SaveDType dtype);

// Loads dir/train_state.bin into p (master weights), opt and st. Throws dsv3::Error when the
// file is missing, truncated or was written for another model shape.
void load_train_state(const std::string& dir, Params<float>& p, AdamW& opt, TrainState& st);

}  // namespace dsv3::train
