// The tests' way back from a GGUF file dsv3 quantize wrote to the checkpoint it came from: each
// GGUF tensor's values, dequantized exactly, in HF order, and the checkpoint's own values in
// the GGUF tensor's order. Built from visit_tensors and the forward name table only, so it
// checks the writer's layouts (stacking, the kv_b split and transpose) independently. Also any
// GGUF file's exact-dequant model as a float32 checkpoint (write_exact_dequant_checkpoint).
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/ggml_blocks.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/gguf_tensor_names.h"
#include "io/safetensors_writer.h"
#include "model/weights.h"
#include "tests/io/gguf_read_back.h"
#include "tests/io/io_test_util.h"

namespace dsv3::testing {

// Where a GGUF tensor's values come from: whole HF tensors in order (experts stacked), or the
// key / value rows of a kv_b_proj.
struct GgufSource {
  std::vector<std::string> hf;
  enum Part { Whole, KvBKeys, KvBValues } part = Whole;
};

inline std::map<std::string, GgufSource> gguf_sources(const ModelConfig& c, bool mtp) {
  std::map<std::string, GgufSource> out;
  visit_tensors(c, mtp, nullptr, [&](const TensorSpec& s) {
    const auto m = match_hf_tensor_name(s.name);
    EXPECT_TRUE(m) << s.name;
    if (!m) return;
    if (s.name.ends_with("kv_b_proj.weight")) {
      for (const GgufTensorName& row : gguf_tensor_names()) {
        if (row.layout == GgufLayout::KvBKeys) out[gguf_tensor_name(row, m->layer)] = {{s.name}, GgufSource::KvBKeys};
        if (row.layout == GgufLayout::KvBValues) out[gguf_tensor_name(row, m->layer)] = {{s.name}, GgufSource::KvBValues};
      }
      return;
    }
    out[gguf_tensor_name(*m->row, m->layer)].hf.push_back(s.name);
  });
  return out;
}

// The checkpoint's values of HF tensor `hf` in float32 (FP8 times its block scale).
inline std::vector<float> checkpoint_values(const Checkpoint& ck, const ModelConfig& c, const std::string& hf) {
  const TensorView v = ck.get(hf);
  std::vector<float> out(static_cast<size_t>(v.numel()));
  const int64_t cols = v.shape.rank == 1 ? v.shape[0] : v.shape[1];
  const auto* p = static_cast<const uint8_t*>(v.data);
  const TensorView sc = v.dtype == DType::F8_E4M3 ? ck.get(hf + "_scale_inv") : TensorView{};
  for (int64_t i = 0; i < v.numel(); ++i) {
    const int64_t r = i / cols, col = i % cols;
    if (v.dtype == DType::F8_E4M3) {
      float s;
      std::memcpy(&s, static_cast<const uint8_t*>(sc.data) +
                          4 * size_t((r / c.weight_block_rows) * sc.shape[1] + col / c.weight_block_cols), 4);
      out[size_t(i)] = fp8e4m3_to_f32(p[i]) * s;
    } else if (v.dtype == DType::BF16) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[size_t(i)] = bf16_to_f32(h);
    } else {
      std::memcpy(&out[size_t(i)], p + 4 * i, 4);
    }
  }
  return out;
}

// kv_b_proj [heads * (nope + v), rank]: attn_k_b is [heads, rank, nope], attn_v_b [heads, v, rank].
// Index of kv_b's element for element i of the split tensor.
inline size_t kv_b_index(const ModelConfig& c, GgufSource::Part part, size_t i) {
  const size_t nope = size_t(c.qk_nope_head_dim), v = size_t(c.v_head_dim), rank = size_t(c.kv_lora_rank);
  if (part == GgufSource::KvBKeys) {
    const size_t h = i / (rank * nope), j = (i / nope) % rank, k = i % nope;
    return (h * (nope + v) + k) * rank + j;
  }
  const size_t h = i / (v * rank), k = (i / rank) % v, j = i % rank;
  return (h * (nope + v) + nope + k) * rank + j;
}

// The checkpoint's values of a GGUF tensor, in the GGUF tensor's order.
inline std::vector<float> checkpoint_values(const Checkpoint& ck, const ModelConfig& c, const GgufSource& src) {
  std::vector<float> out;
  if (src.part == GgufSource::Whole) {
    for (const std::string& hf : src.hf) {
      const auto x = checkpoint_values(ck, c, hf);
      out.insert(out.end(), x.begin(), x.end());
    }
    return out;
  }
  const auto kv = checkpoint_values(ck, c, src.hf.at(0));
  out.resize(kv.size() / size_t(c.qk_nope_head_dim + c.v_head_dim) *
             size_t(src.part == GgufSource::KvBKeys ? c.qk_nope_head_dim : c.v_head_dim));
  for (size_t i = 0; i < out.size(); ++i) out[i] = kv[kv_b_index(c, src.part, i)];
  return out;
}

// A tensor of a written GGUF file, dequantized exactly.
inline std::vector<float> dequantized(const std::string& file_bytes, const ReadBackTensor& t) {
  const DType dt = *dtype_from_ggml_type(t.ggml_type);
  int64_t n = 1;
  for (int64_t d : t.ne) n *= d;
  std::vector<float> x(static_cast<size_t>(n));
  const auto* data = reinterpret_cast<const uint8_t*>(file_bytes.data()) + t.file_offset;
  if (dt == DType::F32) {
    std::memcpy(x.data(), data, x.size() * 4);
  } else if (dt == DType::BF16) {
    for (size_t i = 0; i < x.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      x[i] = bf16_to_f32(h);
    }
  } else {
    ggml::dequantize(dt, data, n / dtype_block_elems(dt), x.data());
  }
  return x;
}

// The GGUF file at `gguf` dequantized exactly (ggml's dequantizers) into a float32 HF checkpoint
// folder `out`: every tensor back under its HF name and shape, with the config.json at
// `config_json` less its quantization_config. The exact-dequant model of a GGUF file.
inline void write_exact_dequant_checkpoint(const std::string& gguf, const ModelConfig& c,
                                           const std::string& config_json, const std::filesystem::path& out) {
  const std::string bytes = read_bytes(gguf);
  const auto sources = gguf_sources(c, false);
  std::map<std::string, std::vector<float>> hf;  // HF name -> values
  std::map<std::string, Shape> shapes;
  visit_tensors(c, false, nullptr, [&](const TensorSpec& s) {
    shapes[s.name] = s.shape;
    hf[s.name].resize(size_t(s.shape.numel()));
  });
  for (const auto& t : tensor_section(bytes)) {
    ASSERT_TRUE(sources.count(t.name)) << t.name;
    const GgufSource& src = sources.at(t.name);
    const std::vector<float> x = dequantized(bytes, t);
    if (src.part == GgufSource::Whole) {
      size_t at = 0;
      for (const std::string& name : src.hf) {
        std::copy_n(x.begin() + at, hf.at(name).size(), hf.at(name).begin());
        at += hf.at(name).size();
      }
      ASSERT_EQ(at, x.size()) << t.name;
    } else {
      auto& kv = hf.at(src.hf.at(0));
      for (size_t i = 0; i < x.size(); ++i) kv[kv_b_index(c, src.part, i)] = x[i];
    }
  }
  std::filesystem::create_directories(out);
  SafetensorsWriter w;
  std::vector<std::string> names;
  for (const auto& [name, values] : hf) {
    w.add(name, DType::F32, shapes.at(name));
    names.push_back(name);
  }
  w.write((out / "model.safetensors").string(), [&](size_t i, std::span<uint8_t> dst) {
    std::memcpy(dst.data(), hf.at(names[i]).data(), dst.size());
  });
  nlohmann::json cfg = nlohmann::json::parse(read_bytes(config_json));
  cfg.erase("quantization_config");
  std::ofstream(out / "config.json") << cfg.dump(2);
}

}  // namespace dsv3::testing
