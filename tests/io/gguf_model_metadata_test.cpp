// The GGUF writer (byte layout, alignment, atomic output), the HF <-> GGUF tensor-name table, and
// the deepseek2 / tokenizer metadata, checked byte for byte against what llama.cpp's converter
// wrote for models/dsv3-kjv (testdata/gguf/kjv-BF16.llamacpp-header.gguf: the header of
// ../shared/gguf/kjv/kjv-BF16.gguf, up to its data section).
#include <gtest/gtest.h>

#include <cstring>

#include "io/config.h"
#include "io/gguf_model_metadata.h"
#include "io/gguf_tensor_names.h"
#include "io/gguf_tokenizer.h"
#include "io/gguf_writer.h"
#include "tests/io/gguf_read_back.h"
#include "tests/io/io_test_util.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using testing::Cursor;
using testing::error_of;
using testing::kv_section;
using testing::read_bytes;
using testing::says;
using testing::TempDir;

const fs::path kKjv = fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv";
const std::string kLlamaHeader = std::string(DSV3_TESTDATA_DIR) + "/gguf/kjv-BF16.llamacpp-header.gguf";

TEST(GgufNames, EveryRowRoundTripsBothWays) {
  for (const GgufTensorName& row : gguf_tensor_names()) {
    const std::string gguf = gguf_tensor_name(row, 7), hf = hf_tensor_name(row, 7, 3);
    const auto g = match_gguf_tensor_name(gguf);
    ASSERT_TRUE(g) << gguf;
    EXPECT_EQ(g->row, &row) << gguf;
    EXPECT_EQ(g->layer, row.gguf.find("{L}") == std::string_view::npos ? -1 : 7) << gguf;
    const auto h = match_hf_tensor_name(hf);
    ASSERT_TRUE(h) << hf;
    if (row.layout == GgufLayout::KvBKeys || row.layout == GgufLayout::KvBValues) {
      EXPECT_EQ(h->row->layout, GgufLayout::Same);  // kv_b_proj matches its unsplit row
      EXPECT_EQ(h->row->hf, row.hf);
    } else {
      EXPECT_EQ(h->row, &row) << hf;
      EXPECT_EQ(h->expert, row.layout == GgufLayout::Experts ? 3 : -1) << hf;
    }
  }
}

TEST(GgufNames, ConverterNames) {
  auto gguf_of = [](const std::string& hf) {
    const auto m = match_hf_tensor_name(hf);
    return m ? gguf_tensor_name(*m->row, m->layer) : std::string("none");
  };
  EXPECT_EQ(gguf_of("model.layers.60.mlp.experts.255.down_proj.weight"), "blk.60.ffn_down_exps.weight");
  EXPECT_EQ(gguf_of("model.layers.3.mlp.gate.e_score_correction_bias"), "blk.3.exp_probs_b.bias");
  EXPECT_EQ(gguf_of("model.layers.61.shared_head.head.weight"), "blk.61.nextn.shared_head_head.weight");
  EXPECT_EQ(gguf_of("lm_head.weight"), "output.weight");
  EXPECT_EQ(gguf_of("model.layers.0.self_attn.q_a_proj.weight_scale_inv"), "none");
  EXPECT_EQ(gguf_of("model.layers.x.input_layernorm.weight"), "none");
  EXPECT_FALSE(match_gguf_tensor_name("blk.01.attn_norm.weight"));  // one spelling per number
  EXPECT_FALSE(match_gguf_tensor_name("blk.1.attn_norm.weight.extra"));
  EXPECT_FALSE(match_gguf_tensor_name("blk..attn_norm.weight"));
}

TEST(GgufMetadata, SizeLabel) {
  EXPECT_EQ(gguf_size_label(2'750'000, 0, 0), "2.8M");
  EXPECT_EQ(gguf_size_label(2'654'000, 98'304, 16), "16x2.8M");
  EXPECT_EQ(gguf_size_label(671'000'000'000, 0, 0), "671B");
  EXPECT_EQ(gguf_size_label(1500, 0, 0), "1.5K");
}

// The metadata written for models/dsv3-kjv is what llama.cpp's convert_hf_to_gguf.py wrote for
// it, key by key and byte by byte (the BF16 file's name and size label given, as the converter
// makes them from the folder name and the tensors).
TEST(GgufMetadata, KjvEqualsLlamaCppConverter) {
  const ModelConfig config = ModelConfig::from_file((kKjv / "config.json").string());
  GgufWriter w;
  const gguf::ModelInfo info{.name = "Kjv Bf16", .size_label = "16x2.8M", .file_type = gguf::FileType::BF16, .mtp = false};
  add_deepseek2_metadata(w, config, info);
  add_tokenizer_metadata(w, kKjv.string(), config.vocab_size);
  TempDir dir("gguf");
  w.write(dir.file("m.gguf"), [](size_t, const GgufWriter::Sink&) {});
  const auto ours = kv_section(read_bytes(dir.file("m.gguf")));
  const auto theirs = kv_section(read_bytes(kLlamaHeader));
  ASSERT_EQ(ours.size(), theirs.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(ours[i].first, theirs[i].first) << "key " << i;
    EXPECT_TRUE(ours[i].second == theirs[i].second) << "value of " << theirs[i].first << " differs";
  }
}

TEST(GgufMetadata, MtpAndYarnKeys) {
  ModelConfig config = ModelConfig::from_file((kKjv / "config.json").string());
  RopeScaling yarn;
  yarn.factor = 40;
  yarn.mscale_all_dim = 1.0;
  config.rope_scaling = yarn;
  GgufWriter w;
  gguf::ModelInfo info;
  info.mtp = true;
  add_deepseek2_metadata(w, config, info);
  TempDir dir("gguf");
  w.write(dir.file("m.gguf"), [](size_t, const GgufWriter::Sink&) {});
  std::map<std::string, std::string> kv;
  for (auto& [k, v] : kv_section(read_bytes(dir.file("m.gguf")))) kv[k] = v;
  auto u32 = [&](const std::string& k) {
    uint32_t v = 0;
    EXPECT_EQ(kv[k].size(), 8u) << k;
    std::memcpy(&v, kv[k].data() + 4, 4);
    return v;
  };
  auto f32 = [&](const std::string& k) {
    float v = 0;
    std::memcpy(&v, kv[k].data() + 4, 4);
    return v;
  };
  EXPECT_EQ(u32("deepseek2.block_count"), 5u);  // 4 layers and the MTP layer
  EXPECT_EQ(u32("deepseek2.nextn_predict_layers"), 1u);
  EXPECT_EQ(u32("deepseek2.rope.scaling.original_context_length"), 4096u);
  EXPECT_EQ(f32("deepseek2.rope.scaling.factor"), 40.0f);
  EXPECT_FLOAT_EQ(f32("deepseek2.rope.scaling.yarn_log_multiplier"), 0.1f);
  EXPECT_EQ(kv["deepseek2.rope.scaling.type"].substr(12), "yarn");
}

}  // namespace
}  // namespace dsv3
