// Builds small Hugging Face-layout checkpoints for loader tests: the tensor list comes from
// visit_tensors (the loader's own table), is edited by the test (drop, reshape, add), and is
// written with SafetensorsWriter into one file or several shards tied by an index.
#pragma once
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/config.h"
#include "io/safetensors_writer.h"
#include "io_test_util.h"
#include "model/synth.h"
#include "model/weights.h"

namespace dsv3::testing {

// tiny's architecture (MLA with q LoRA, noaux_tc group routing, 1 dense + 1 MoE layer, FP8),
// shrunk so a checkpoint is ~100 KB.
inline ModelConfig small_test_config() {
  ModelConfig c = synth_preset("tiny");
  c.vocab_size = 64; c.hidden_size = 64; c.intermediate_size = 96; c.moe_intermediate_size = 32;
  c.num_hidden_layers = 2; c.num_attention_heads = 2; c.n_routed_experts = 4; c.num_experts_per_tok = 2;
  c.n_group = 2; c.topk_group = 1; c.q_lora_rank = 32; c.kv_lora_rank = 32;
  c.qk_nope_head_dim = 16; c.qk_rope_head_dim = 8; c.v_head_dim = 16; c.num_nextn_predict_layers = 0;
  return c;
}

struct TensorDef {
  std::string name;
  DType dtype;
  Shape shape;
};

// Every tensor a checkpoint of `c` holds, as synth writes them: FP8 linears with F32
// `_scale_inv` blocks when c.fp8, BF16 otherwise; F32 norms and gate bias.
inline std::vector<TensorDef> checkpoint_tensors(const ModelConfig& c) {
  std::vector<TensorDef> out;
  visit_tensors(c, /*include_mtp=*/true, nullptr, [&](const TensorSpec& s) {
    switch (s.kind) {
      case TensorKind::Linear:
        if (c.fp8) {
          out.push_back({s.name, DType::F8_E4M3, s.shape});
          out.push_back({s.name + "_scale_inv", DType::F32,
                         Shape{(s.shape[0] + c.weight_block_rows - 1) / c.weight_block_rows,
                               (s.shape[1] + c.weight_block_cols - 1) / c.weight_block_cols}});
        } else {
          out.push_back({s.name, DType::BF16, s.shape});
        }
        break;
      case TensorKind::Norm: case TensorKind::GateBias: out.push_back({s.name, DType::F32, s.shape}); break;
      default: out.push_back({s.name, DType::BF16, s.shape}); break;
    }
  });
  return out;
}

inline TensorDef& find_def(std::vector<TensorDef>& t, const std::string& name) {
  auto it = std::find_if(t.begin(), t.end(), [&](const TensorDef& d) { return d.name == name; });
  if (it == t.end()) throw std::logic_error("test bug: no tensor " + name);
  return *it;
}

inline void erase_def(std::vector<TensorDef>& t, const std::string& name) {
  find_def(t, name);
  t.erase(std::remove_if(t.begin(), t.end(), [&](const TensorDef& d) { return d.name == name; }), t.end());
}

// Deterministic, finite contents: small FP8 codes, scales of 1/64, small floats.
inline void fill_tensor(const TensorDef& d, size_t salt, std::span<uint8_t> dst) {
  const size_t n = dst.size() / dtype_size(d.dtype);
  for (size_t i = 0; i < n; ++i) {
    const float v = float(int((i * 7 + salt * 13) % 17) - 8) / 64.0f;
    switch (d.dtype) {
      case DType::F32: {
        const float x = d.name.ends_with("_scale_inv") ? 1.0f / 64 : v;
        std::memcpy(&dst[i * 4], &x, 4);
        break;
      }
      case DType::BF16: {
        const uint16_t h = f32_to_bf16(v);
        std::memcpy(&dst[i * 2], &h, 2);
        break;
      }
      case DType::F8_E4M3: dst[i] = f32_to_fp8e4m3(v * 64); break;
      default: std::memset(&dst[i * dtype_size(d.dtype)], int(i), dtype_size(d.dtype)); break;
    }
  }
}

inline std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

// Writes config.json and the tensors: one model.safetensors (no index) when shards == 1,
// else `shards` files of contiguous runs of tensors plus model.safetensors.index.json.
inline void write_checkpoint(const std::string& dir, const ModelConfig& c, const std::vector<TensorDef>& tensors,
                             size_t shards = 1) {
  std::filesystem::create_directories(dir);
  write_bytes(dir + "/config.json", c.to_json().dump(2));
  nlohmann::json weight_map = nlohmann::json::object();
  const size_t per = (tensors.size() + shards - 1) / shards;
  for (size_t s = 0; s < shards; ++s) {
    const size_t b = s * per, e = std::min(tensors.size(), b + per);
    const std::string file = shards == 1 ? "model.safetensors" : shard_name(s, shards);
    SafetensorsWriter w;
    for (size_t i = b; i < e; ++i) {
      w.add(tensors[i].name, tensors[i].dtype, tensors[i].shape);
      weight_map[tensors[i].name] = file;
    }
    w.write(dir + "/" + file, [&](size_t i, std::span<uint8_t> dst) { fill_tensor(tensors[b + i], b + i, dst); });
  }
  if (shards > 1)
    write_bytes(dir + "/model.safetensors.index.json",
                nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2));
}

}  // namespace dsv3::testing
