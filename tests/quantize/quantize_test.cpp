// `dsv3 quantize` in process on models/dsv3-kjv, against llama.cpp's own files of that model
// (../shared/gguf/kjv, summarised in testdata/gguf/kjv-llamacpp-tensors.json: each tensor's type
// and ne, and for the BF16 file an FNV-1a hash of its bytes):
// - BF16 without the MTP layer: the same tensors, shapes and bytes as convert_hf_to_gguf.py;
// - the Q8_0 / Q6_K / Q4_K_M recipes: the type llama-quantize chose for every tensor;
// - every quantized tensor dequantizes to the FP8 weights within its format's rounding bound;
// - the MTP layer as llama.cpp's NextN layer; interrupts and bad input leave no file.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/config.h"
#include "model/quantize.h"
#include "tests/io/gguf_read_back.h"
#include "tests/quantize/gguf_to_hf.h"
#include "tests/io/io_test_util.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::read_bytes;
using testing::says;
using testing::TempDir;

const fs::path kKjv = fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv";

nlohmann::json llama_tensors(const std::string& file) {
  std::ifstream f(std::string(DSV3_TESTDATA_DIR) + "/gguf/kjv-llamacpp-tensors.json");
  return nlohmann::json::parse(f).at(file);
}

uint64_t fnv1a64(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

struct Written {
  std::string bytes;
  std::vector<testing::ReadBackTensor> tensors;
  std::map<std::string, std::string> kv;
  QuantizeStats stats;
  const testing::ReadBackTensor& at(const std::string& name) const {
    for (const auto& t : tensors)
      if (t.name == name) return t;
    throw std::runtime_error("no tensor " + name);
  }
  uint32_t u32(const std::string& key) const {
    uint32_t v = 0;
    std::memcpy(&v, kv.at(key).data() + 4, 4);
    return v;
  }
};

Written quantize_kjv(QuantTarget target, bool mtp, const TempDir& dir) {
  QuantizeOptions o;
  o.model_dir = kKjv.string();
  o.out_path = dir.file(std::string(quant_target_name(target)) + (mtp ? "-mtp" : "") + ".gguf");
  o.target = target;
  o.mtp = mtp;
  o.progress = false;
  o.threads = 2;
  Written w;
  w.stats = quantize_checkpoint(o);
  w.bytes = read_bytes(o.out_path);
  w.tensors = testing::tensor_section(w.bytes);
  for (auto& [k, v] : testing::kv_section(w.bytes)) w.kv[k] = v;
  return w;
}

DType dtype_of(uint32_t ggml_type) { return *dtype_from_ggml_type(ggml_type); }

TEST(Quantize, Bf16EqualsLlamaCppConverter) {
  TempDir dir("quantize");
  const Written w = quantize_kjv(QuantTarget::BF16, false, dir);
  const nlohmann::json ref = llama_tensors("BF16");
  ASSERT_EQ(w.tensors.size(), ref.size());
  for (const auto& t : w.tensors) {
    ASSERT_TRUE(ref.contains(t.name)) << t.name;
    const auto& r = ref[t.name];
    EXPECT_EQ(dtype_name(dtype_of(t.ggml_type)), r["type"].get<std::string>()) << t.name;
    EXPECT_EQ(t.ne, r["ne"].get<std::vector<int64_t>>()) << t.name;
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    const uint64_t bytes = dtype_row_bytes(dtype_of(t.ggml_type), t.ne[0]) * uint64_t(n / t.ne[0]);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  (unsigned long long)fnv1a64(reinterpret_cast<const uint8_t*>(w.bytes.data()) + t.file_offset, bytes));
    EXPECT_EQ(std::string(hex), r["fnv1a64"].get<std::string>()) << t.name << " differs from llama.cpp's";
  }
  EXPECT_EQ(w.u32("deepseek2.block_count"), 4u);
  EXPECT_FALSE(w.kv.count("deepseek2.nextn_predict_layers"));
  EXPECT_EQ(w.u32("general.file_type"), 32u);
}

class Recipe : public ::testing::TestWithParam<std::string> {};

// Every tensor gets the type llama-quantize gave it, except where dsv3's Q4_K_M deliberately
// differs (docs/quantize.md): the token embedding Q6_K, and MLA's attn_k_b / attn_v_b Q6_K,
// which their 32- and 64-value rows here turn into Q8_0 (llama.cpp: Q4_K -> Q5_0).
TEST_P(Recipe, TypesEqualLlamaQuantize) {
  TempDir dir("quantize");
  const QuantTarget target = *quant_target_from_name(GetParam());
  const Written w = quantize_kjv(target, false, dir);
  const nlohmann::json ref = llama_tensors(GetParam());
  ASSERT_EQ(w.tensors.size(), ref.size());
  int64_t upgraded = 0;
  for (const auto& t : w.tensors) {
    ASSERT_TRUE(ref.contains(t.name)) << t.name;
    std::string want = ref[t.name]["type"].get<std::string>();
    if (target == QuantTarget::Q4_K_M) {
      const bool kv_b = t.name.find("attn_k_b") != std::string::npos || t.name.find("attn_v_b") != std::string::npos;
      if (t.name == "token_embd.weight") want = "Q6_K";
      if (kv_b) want = "Q8_0";
      upgraded += t.name == "token_embd.weight" || kv_b;
    }
    EXPECT_EQ(dtype_name(dtype_of(t.ggml_type)), want) << t.name;
  }
  EXPECT_EQ(upgraded, target == QuantTarget::Q4_K_M ? 9 : 0);
  EXPECT_EQ(w.u32("general.file_type"), quant_target_file_type(target));
}

INSTANTIATE_TEST_SUITE_P(Kjv, Recipe, ::testing::Values("Q8_0", "Q6_K", "Q4_K_M"));

// Every tensor of every type dequantizes back to the checkpoint's values (FP8 times its block
// scale) within what its format can hold, as a fraction of the largest magnitude in its block
// (32 values) or super-block (256, the K-quants, whose sub-block scales are quantized against
// the super-block's): half a quantization step, plus the rounding of the scales. Q8_0: step
// amax / 127; Q6_K: amax / 32; Q4_K: range / 15; Q2_K: range / 3. The formats whose levels are
// asymmetric (Q5_0: -16..15, Q4_0: -8..7, Q3_K: -4..3) map the largest magnitude to the long
// end and may clip the other end by a whole step: Q5_0 amax / 16, Q4_0 amax / 8, Q3_K amax / 4.
// A wrong layout (a missed transpose, experts out of order) is off by the values themselves
// and fails every type.
TEST(Quantize, EveryTensorDequantizesToTheFp8Weights) {
  const std::map<DType, double> kTolerance = {{DType::F32, 0.0},       {DType::BF16, 1.0 / 256},
                                              {DType::Q8_0, 1.0 / 200}, {DType::Q5_0, 1.0 / 15},
                                              {DType::Q4_0, 1.0 / 7},   {DType::Q6_K, 1.0 / 40},
                                              {DType::Q4_K, 1.0 / 8},   {DType::Q3_K, 1.0 / 3},
                                              {DType::Q2_K, 1.0 / 2}};
  const ModelConfig c = ModelConfig::from_file((kKjv / "config.json").string());
  const Checkpoint ck = Checkpoint::open(kKjv.string());
  const auto sources = testing::gguf_sources(c, true);
  for (const std::string type : {"Q8_0", "Q6_K", "Q4_K_M", "Q2_K_XL"}) {
    TempDir dir("quantize");
    const Written w = quantize_kjv(*quant_target_from_name(type), true, dir);
    for (const auto& t : w.tensors) {
      const DType dt = dtype_of(t.ggml_type);
      ASSERT_TRUE(sources.count(t.name)) << t.name;
      const std::vector<float> got = testing::dequantized(w.bytes, t);
      const std::vector<float> want = testing::checkpoint_values(ck, c, sources.at(t.name));
      ASSERT_EQ(want.size(), got.size()) << type << " " << t.name;
      const size_t group = dtype_block_elems(dt) == 256 ? 256 : 32;
      const double tol = kTolerance.at(dt);
      for (size_t b = 0; b < want.size(); b += group) {
        float amax = 0;
        for (size_t i = b; i < std::min(want.size(), b + group); ++i) amax = std::max(amax, std::fabs(want[i]));
        for (size_t i = b; i < std::min(want.size(), b + group); ++i)
          ASSERT_LE(std::fabs(got[i] - want[i]), tol * amax + 1e-30)
              << type << " " << t.name << " (" << dtype_name(dt) << ") value " << i << ": " << got[i] << " vs " << want[i];
      }
    }
  }
}

TEST(Quantize, MtpLayerIsLlamaCppsNextnLayer) {
  TempDir dir("quantize");
  const Written w = quantize_kjv(QuantTarget::Q8_0, true, dir);
  EXPECT_EQ(w.u32("deepseek2.block_count"), 5u);
  EXPECT_EQ(w.u32("deepseek2.nextn_predict_layers"), 1u);
  EXPECT_EQ(w.at("blk.4.nextn.eh_proj.weight").ne, (std::vector<int64_t>{512, 256}));
  for (const std::string n : {"blk.4.nextn.enorm.weight", "blk.4.nextn.hnorm.weight", "blk.4.nextn.shared_head_norm.weight",
                              "blk.4.attn_k_b.weight", "blk.4.ffn_down_exps.weight", "blk.4.exp_probs_b.bias"})
    EXPECT_NO_THROW(w.at(n)) << n;
  // The MTP layer's embedding and head equal the main ones: left out, llama.cpp uses those.
  EXPECT_THROW(w.at("blk.4.nextn.embed_tokens.weight"), std::runtime_error);
  EXPECT_THROW(w.at("blk.4.nextn.shared_head_head.weight"), std::runtime_error);
  // The main layers' 70 tensors, and the MTP layer's 18 of a MoE layer and its 4 own.
  EXPECT_EQ(w.tensors.size(), 70u + 18u + 4u);
}

TEST(Quantize, InterruptAndBadInputLeaveNoFile) {
  TempDir dir("quantize");
  std::atomic<bool> stop{true};
  QuantizeOptions o;
  o.model_dir = kKjv.string();
  o.out_path = dir.file("x.gguf");
  o.progress = false;
  o.stop = &stop;
  EXPECT_TRUE(says(error_of([&] { quantize_checkpoint(o); }), {"interrupted", "x.gguf"}));
  EXPECT_TRUE(fs::is_empty(dir.path()));
  o.stop = nullptr;
  o.model_dir = dir.file("missing");
  EXPECT_TRUE(says(error_of([&] { quantize_checkpoint(o); }), {"missing", "not a checkpoint folder"}));
  o.model_dir = kKjv.string();
  testing::write_bytes(o.out_path, "old");
  EXPECT_TRUE(says(error_of([&] { quantize_checkpoint(o); }), {"x.gguf", "exists", "--force"}));
  EXPECT_EQ(read_bytes(o.out_path), "old");
  // A checkpoint whose tensors disagree with its config.json.
  const fs::path bad = dir.path() / "bad";
  fs::create_directories(bad);
  for (const auto& e : fs::directory_iterator(kKjv)) fs::copy_file(e.path(), bad / e.path().filename());
  std::string cfg = read_bytes((bad / "config.json").string());
  cfg.replace(cfg.find("\"hidden_size\": 256"), 18, "\"hidden_size\": 320");
  testing::write_bytes((bad / "config.json").string(), cfg);
  o.model_dir = bad.string();
  o.out_path = dir.file("y.gguf");
  EXPECT_TRUE(says(error_of([&] { quantize_checkpoint(o); }), {"does not match the config"}));
  EXPECT_FALSE(fs::exists(o.out_path));
}

}  // namespace
}  // namespace dsv3
