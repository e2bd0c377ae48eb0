// `dsv3 synth`: random-weight checkpoints in exactly the Hugging Face DeepSeek-V3 layout
// (config.json, sharded safetensors, model.safetensors.index.json), for tests, demos and
// benchmarks. The weights are random: such a model produces meaningless text.
#pragma once
#include <cstdint>
#include <string>

#include "io/config.h"

namespace dsv3 {

// DeepSeek-V3's architecture choices with no sizes filled in: sigmoid router with the
// correction bias (noaux_tc), normalised top-k x 2.5, one dense layer first, one shared expert,
// one MTP module, BOS 0 / EOS 1, rope theta 10000, no YaRN. Presets and the trainer start here.
ModelConfig deepseek_v3_defaults();

// Config of a named preset: "tiny" (~10M params, golden-sized), "small" (~0.8B), "medium"
// (~2B total, V3 proportions: 64 experts, 6 active). Throws dsv3::Error for unknown names.
ModelConfig synth_preset(const std::string& name);

// `c` with its first `layers` main layers (issue 20: DeepSeek-V3's own config.json cut to
// 2 layers, 1 dense + 1 MoE, to measure real shapes): keeps first_k_dense_replace dense layers
// but at most layers - 1, so that a model with routed experts keeps a MoE layer. Throws if
// layers < 1.
ModelConfig cut_layers(ModelConfig c, int64_t layers);

struct SynthOptions {
  std::string out_dir;
  bool fp8 = true;            // FP8 e4m3 linears with 128x128 block scales, else BF16
  uint64_t seed = 0;
  uint64_t shard_bytes = 1ull << 30;  // largest shard size
  bool force = false;         // replace an existing non-empty out_dir
  bool progress = true;
  // Bytes generated at a time (SafetensorsWriter::write_chunked): memory stays bounded for any
  // config; the bytes written do not depend on it.
  uint64_t chunk_bytes = uint64_t(64) << 20;
  // Folder with tokenizer.json and tokenizer_config.json to ship in the checkpoint; the vocab
  // becomes DeepSeek-V3's 129280 rows then. Empty: no tokenizer, the preset's small vocab.
  std::string tokenizer_dir;
};

// Writes the checkpoint. The folder appears complete or not at all (built beside it, renamed in).
void write_synthetic_checkpoint(const ModelConfig& c, const SynthOptions& opt);

}  // namespace dsv3
