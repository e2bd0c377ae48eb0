// Test helper: a float (F32/BF16/F16) Hugging Face checkpoint rewritten as a deepseek2 GGUF file
// the way llama.cpp's converter lays it out (names and metadata from io/gguf_names, dims
// reversed, experts stacked, kv_b_proj fused, split per head, or both), so that the GGUF
// reader can be checked against the safetensors reader on the same weights.
#pragma once
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/gguf_names.h"
#include "model/weights.h"
#include "tests/io/gguf_builder.h"

namespace dsv3::testing {

enum class KvBLayout { Fused, Split, Both };

inline uint32_t ggml_id(DType d) {
  switch (d) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::BF16: return 30;
    default: throw Error("hf_to_gguf: only float checkpoints");
  }
}

// Adds a metadata value to `b` with its own type.
inline void add_value(GgufBuilder& b, const std::string& key, const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::U32: b.u32(key, uint32_t(std::get<uint64_t>(v.scalar))); break;
    case GgufValueType::F32: b.f32(key, float(std::get<double>(v.scalar))); break;
    case GgufValueType::BOOL: b.boolean(key, std::get<bool>(v.scalar)); break;
    case GgufValueType::STRING: b.string(key, std::get<std::string>(v.scalar)); break;
    default: throw Error("add_value: type not used by metadata_from_config");
  }
}

inline std::string hf_to_gguf(const Checkpoint& ck, const ModelConfig& c, KvBLayout layout) {
  GgufBuilder b;
  const bool mtp = c.num_nextn_predict_layers > 0 &&
                   ck.has("model.layers." + std::to_string(c.num_hidden_layers) + ".eh_proj.weight");
  gguf::ModelInfo info;
  info.mtp = mtp;
  for (const auto& [k, v] : gguf::metadata_from_config(c, info)) add_value(b, k, v);
  if (c.bos_token_id >= 0) b.u32("tokenizer.ggml.bos_token_id", uint32_t(c.bos_token_id));
  if (!c.eos_token_ids.empty()) b.u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos_token_ids[0]));
  struct Stack {
    DType dtype;
    Shape shape;  // one expert's [out, in]
    std::map<int64_t, std::string> experts;
  };
  std::map<std::string, Stack> stacks;
  std::vector<std::string> stack_order;
  const int64_t nh = c.num_attention_heads, dn = c.qk_nope_head_dim, dv = c.v_head_dim, rank = c.kv_lora_rank;
  visit_tensors(c, mtp, nullptr, [&](const TensorSpec& s) {
    const TensorView t = ck.get(s.name);
    const auto name = gguf::tensor_name(s.name);
    const std::string bytes(static_cast<const char*>(t.data), t.nbytes());
    std::vector<uint64_t> ne;
    for (int i = t.shape.rank - 1; i >= 0; --i) ne.push_back(uint64_t(t.shape[i]));
    if (name->expert >= 0) {
      if (!stacks.count(name->name)) stack_order.push_back(name->name);
      Stack& st = stacks[name->name];
      st.dtype = t.dtype;
      st.shape = t.shape;
      st.experts[name->expert] = bytes;
      return;
    }
    if (!s.name.ends_with("kv_b_proj.weight")) {
      b.tensor(name->name, ggml_id(t.dtype), ne, bytes);
      return;
    }
    if (layout != KvBLayout::Split) b.tensor(name->name, ggml_id(t.dtype), ne, bytes);
    if (layout == KvBLayout::Fused) return;
    // kv_b [nh * (dn + dv), rank] -> k_b [nh, rank, dn] (transposed per head), v_b [nh, dv, rank].
    const size_t es = dtype_size(t.dtype);
    std::string k_b(size_t(nh * rank * dn) * es, '\0'), v_b(size_t(nh * dv * rank) * es, '\0');
    for (int64_t h = 0; h < nh; ++h) {
      for (int64_t d = 0; d < dn; ++d)
        for (int64_t r = 0; r < rank; ++r)
          std::memcpy(&k_b[size_t((h * rank + r) * dn + d) * es], &bytes[size_t((h * (dn + dv) + d) * rank + r) * es], es);
      std::memcpy(&v_b[size_t(h * dv * rank) * es], &bytes[size_t((h * (dn + dv) + dn) * rank) * es],
                  size_t(dv * rank) * es);
    }
    const auto split = gguf::kv_b_split_names(s.layer);
    b.tensor(split.k_b, ggml_id(t.dtype), {uint64_t(dn), uint64_t(rank), uint64_t(nh)}, k_b);
    b.tensor(split.v_b, ggml_id(t.dtype), {uint64_t(rank), uint64_t(dv), uint64_t(nh)}, v_b);
  });
  for (const std::string& n : stack_order) {
    const Stack& st = stacks[n];
    std::string all;
    for (const auto& [e, bytes] : st.experts) all += bytes;
    b.tensor(n, ggml_id(st.dtype), {uint64_t(st.shape[1]), uint64_t(st.shape[0]), uint64_t(st.experts.size())}, all);
  }
  return b.bytes();
}

}  // namespace dsv3::testing
