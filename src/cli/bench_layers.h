// `dsv3 bench`'s per-layer report: where a prefill and a decode token's time goes (each layer,
// the embedding, the final norm and lm_head, the MTP module), next to the weight bytes each
// part reads, and the per-token times of a deeper model of the same layer shapes projected
// from the measured dense and MoE layers.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/bench.h"
#include "io/config.h"
#include "model/transformer.h"

namespace dsv3::cli {

// One run's figures into `r`: "layers" (one object per main layer: index, kind dense|moe, the
// prefill and decode ms per token, the weight and cache bytes it reads per decoded token, and
// the GB/s that makes, alone and as a share of `bandwidth` in bytes/s; the same for its halves,
// "attention_*" (attn_norm, MLA, the cache) and "ffn_*" (ffn_norm, MLP or MoE)), and the step's other
// parts as "prefill_*_ms_per_token" and "decode_*_ms_per_token" (embed, head, step: the whole
// forward step). `cache_bytes` is the latent cache a decoded token reads in all layers.
void add_layer_times(nlohmann::ordered_json& r, const ModelConfig& c, const ModelWeights& w, const StepWeightBytes& wb,
                     double cache_bytes, double bandwidth, const StepTimes& prefill, const StepTimes& decode);

// Throws unless the model of config `p` (the file `path`) has the layer shapes of `c` and only
// kinds of layer that `c` has too.
void check_projectable(const ModelConfig& c, const ModelConfig& p, const std::string& path);

// After the runs' medians: "layer_kinds", each kind's mean over its layers (same keys as a
// layer, and "layers": how many), and with `project`, "projection": the model of that config
// (its num_hidden_layers and dense/MoE split) run as this one was, from the dense and the MoE
// layers' means; the parts outside the layers as measured (`project` passed check_projectable).
void summarise_layer_times(nlohmann::ordered_json& j, const ModelConfig& c, const std::optional<ModelConfig>& project,
                           const std::string& project_path);

// The text form of the above, after bench's other lines.
void print_layer_times(const nlohmann::ordered_json& j);

}  // namespace dsv3::cli
