// GGUF reading: llama.cpp's own files parse into the expected tensors and metadata; every
// damaged header (cut short anywhere, lying counts, bad types, misaligned or overlapping
// tensors, broken split sets) is rejected with one line naming the file and what is wrong.
#include "io/gguf.h"

#include <gtest/gtest.h>

#include <fstream>

#include "gguf_builder.h"
#include "io/gguf_names.h"
#include "io_test_util.h"

namespace dsv3 {
namespace {

using testing::error_of;
using testing::GgufBuilder;
using testing::read_bytes;
using testing::says;
using testing::TempDir;
using testing::write_bytes;

const std::string kKjv = std::string(DSV3_TESTDATA_DIR) + "/gguf/kjv/";

// A small valid file: metadata of several types, an F32 vector, a BF16 matrix and a Q8_0 matrix.
GgufBuilder small_file() {
  GgufBuilder b;
  b.string("general.architecture", "deepseek2").u32("deepseek2.block_count", 2).f32("x.eps", 1e-6f);
  b.boolean("x.flag", true).strings("tokens", {"a", "bc", ""}).i32s("types", {1, 3, -2});
  b.tensor("norm.weight", 0, {4}, std::string(16, '\1'));
  b.tensor("w.weight", 30, {8, 3}, std::string(48, '\2'));
  b.tensor("q.weight", 8, {128, 4}, std::string(16 * 34, '\3'));  // ends aligned: no padding
  return b;
}

TEST(Gguf, SmallFileParses) {
  const std::string bytes = small_file().bytes();
  const GgufHeader h = parse_gguf_header({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "t.gguf");
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.alignment, 32u);
  EXPECT_EQ(h.data_offset % 32, 0u);
  EXPECT_EQ(h.metadata.string("general.architecture"), "deepseek2");
  EXPECT_EQ(h.metadata.integer("deepseek2.block_count"), 2);
  EXPECT_FLOAT_EQ(float(h.metadata.number("x.eps")), 1e-6f);
  EXPECT_TRUE(h.metadata.boolean("x.flag"));
  EXPECT_EQ(h.metadata.strings("tokens"), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(h.metadata.integers("types"), (std::vector<int64_t>{1, 3, -2}));
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[1].torch_shape(), (Shape{3, 8}));
  EXPECT_EQ(h.tensors[1].nbytes, 48u);
  EXPECT_EQ(h.tensors[2].type.name, "Q8_0");
  EXPECT_EQ(h.tensors[2].nbytes, 16u * 34u);
  EXPECT_EQ(h.tensors[2].offset % 32, 0u);
}

TEST(Gguf, MetadataAccessorsNameKeyAndType) {
  const std::string bytes = small_file().bytes();
  const GgufHeader h = parse_gguf_header({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "t.gguf");
  EXPECT_TRUE(says(error_of([&] { h.metadata.integer("general.architecture"); }),
                   {"t.gguf", "'general.architecture'", "must be an integer", "string"}));
  EXPECT_TRUE(says(error_of([&] { h.metadata.string("nope"); }), {"t.gguf", "missing metadata 'nope'"}));
  EXPECT_TRUE(says(error_of([&] { h.metadata.strings("types"); }), {"'types'", "array of strings"}));
  EXPECT_EQ(h.metadata.integer("nope", 7), 7);
}

TEST(Gguf, LlamaCppFilesParse) {
  for (const char* name : {"kjv-BF16", "kjv-Q8_0", "kjv-Q6_K", "kjv-Q4_K_M"}) {
    SCOPED_TRACE(name);
    const GgufModel g = GgufModel::open(kKjv + name + ".gguf");
    EXPECT_EQ(g.files().size(), 1u);
    EXPECT_EQ(g.tensors().size(), 70u);  // CASE.md: 4 layers, MTP dropped
    EXPECT_EQ(g.metadata().string("general.architecture"), "deepseek2");
    EXPECT_EQ(g.metadata().strings("tokenizer.ggml.tokens").size(), 2048u);
    const auto& kb = *g.get("blk.1.attn_k_b.weight").info;
    EXPECT_EQ(kb.torch_shape(), (Shape{4, 64, 32}));  // [n_heads, kv_lora_rank, qk_nope]
    const auto& exps = *g.get("blk.1.ffn_down_exps.weight").info;
    EXPECT_EQ(exps.torch_shape(), (Shape{16, 256, 128}));  // [n_experts, dim, moe_inter]
    EXPECT_EQ(g.get("token_embd.weight").info->torch_shape(), (Shape{2048, 256}));
  }
}

TEST(Gguf, TypeTableMatchesGgml) {
  // Bits per weight of the types the issue names, as ggml defines their blocks.
  auto bpw = [](const char* n) {
    const auto t = ggml_type_from_name(n);
    return t ? 8.0 * double(t->block_bytes) / double(t->block) : -1.0;
  };
  EXPECT_DOUBLE_EQ(bpw("Q8_0"), 8.5);
  EXPECT_DOUBLE_EQ(bpw("Q4_0"), 4.5);
  EXPECT_DOUBLE_EQ(bpw("Q4_1"), 5.0);
  EXPECT_DOUBLE_EQ(bpw("Q5_0"), 5.5);
  EXPECT_DOUBLE_EQ(bpw("Q5_1"), 6.0);
  EXPECT_DOUBLE_EQ(bpw("Q2_K"), 2.625);
  EXPECT_DOUBLE_EQ(bpw("Q3_K"), 3.4375);
  EXPECT_DOUBLE_EQ(bpw("Q4_K"), 4.5);
  EXPECT_DOUBLE_EQ(bpw("Q5_K"), 5.5);
  EXPECT_DOUBLE_EQ(bpw("Q6_K"), 6.5625);
  EXPECT_DOUBLE_EQ(bpw("BF16"), 16.0);
  EXPECT_FALSE(ggml_type(4).has_value());  // retired Q4_2
  // Every type the kernels read has the same blocks in the reader's table.
  for (uint32_t id = 0; id < 64; ++id) {
    const auto d = dtype_from_ggml_type(id);
    if (!d) continue;
    SCOPED_TRACE(id);
    ASSERT_TRUE(ggml_type(id).has_value());
    EXPECT_EQ(ggml_type(id)->block, dtype_block_elems(*d));
    EXPECT_EQ(size_t(ggml_type(id)->block_bytes), dtype_block_bytes(*d));
    EXPECT_EQ(ggml_type(id)->name, dtype_name(*d));
  }
}

class GgufBadInput : public ::testing::Test {
 protected:
  std::string open_error(const std::string& bytes) {
    write_bytes(path_, bytes);
    return error_of([&] { GgufModel::open(path_); });
  }
  TempDir dir_{"gguf"};
  std::string path_ = dir_.file("bad.gguf");
};

TEST_F(GgufBadInput, EveryTruncationIsRejected) {
  // Cut short anywhere, a file must be rejected with a message (never read past its end: the
  // asan build checks that too). The last few bytes are tensor data the header still claims.
  const std::string full = small_file().bytes();
  for (size_t n = 0; n < full.size(); ++n) {
    const std::vector<uint8_t> cut(full.begin(), full.begin() + std::ptrdiff_t(n));  // exactly n bytes on the heap
    const std::string msg = error_of([&] { parse_gguf_header(cut, "cut.gguf"); });
    ASSERT_TRUE(says(msg, {"cut.gguf"})) << "cut at " << n;
  }
}

TEST_F(GgufBadInput, WrongMagicAndVersions) {
  std::string b = small_file().bytes();
  b[0] = 'X';
  EXPECT_TRUE(says(open_error(b), {path_, "not a GGUF file"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().version(1).bytes()), {path_, "version 1", "not supported"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().version(3u << 24).bytes()), {path_, "big-endian"}));
}

TEST_F(GgufBadInput, UnknownTypes) {
  EXPECT_TRUE(says(open_error(GgufBuilder().kv_raw("k", 13, "").bytes()), {path_, "'k'", "unknown value type 13"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().tensor("t", 4, {32}, std::string(20, 0)).bytes()),
                   {path_, "tensor 't'", "unknown ggml type 4"}));
  const std::string nested = GgufBuilder::le<uint32_t>(9) + GgufBuilder::le<uint64_t>(0);
  EXPECT_TRUE(says(open_error(GgufBuilder().kv_raw("arr", 9, nested).bytes()), {path_, "'arr'", "nested arrays"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().kv_raw("b", 7, std::string(1, '\2')).bytes()), {"'b'", "bool value 2"}));
}

TEST_F(GgufBadInput, LyingCounts) {
  // An array count the file cannot hold is refused before anything is allocated for it.
  const std::string huge = GgufBuilder::le<uint32_t>(4) + GgufBuilder::le<uint64_t>(1ull << 60);
  EXPECT_TRUE(says(open_error(GgufBuilder().kv_raw("arr", 9, huge).bytes()), {path_, "'arr'", "does not fit"}));
  std::string b = GgufBuilder().u32("a", 1).bytes();
  std::memcpy(b.data() + 16, "\xff\xff\xff\xff\xff\xff\xff\x0f", 8);  // the metadata count
  EXPECT_TRUE(says(open_error(b), {path_, "metadata count", "cannot fit"}));
  b = GgufBuilder().bytes();
  std::memcpy(b.data() + 8, "\xff\xff\xff\xff\x00\x00\x00\x00", 8);  // the tensor count
  EXPECT_TRUE(says(open_error(b), {path_, "tensor count", "cannot fit"}));
  const std::string long_key = GgufBuilder::le<uint64_t>(1ull << 62);
  b = "GGUF" + GgufBuilder::le<uint32_t>(3) + GgufBuilder::le<uint64_t>(0) + GgufBuilder::le<uint64_t>(1) + long_key + std::string(16, 0);
  EXPECT_TRUE(says(open_error(b), {path_, "truncated", "metadata key"}));
}

TEST_F(GgufBadInput, DuplicateKeysAndTensors) {
  EXPECT_TRUE(says(open_error(GgufBuilder().u32("a", 1).u32("a", 2).bytes()), {path_, "'a'", "twice"}));
  EXPECT_TRUE(says(open_error(GgufBuilder()
                                  .tensor("t", 0, {1}, std::string(4, 0))
                                  .tensor("t", 0, {1}, std::string(4, 0))
                                  .bytes()),
                   {path_, "tensor 't'", "twice"}));
}

TEST_F(GgufBadInput, TensorGeometry) {
  EXPECT_TRUE(says(open_error(GgufBuilder().tensor("q", 8, {48}, std::string(68, 0)).bytes()),
                   {path_, "tensor 'q'", "48 elements", "Q8_0 blocks (32)"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().tensor("t", 0, {1, 1, 1, 1, 1}, std::string(4, 0)).bytes()),
                   {path_, "tensor 't'", "5 dimensions"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().tensor("t", 0, {1ull << 41}, "").bytes()),
                   {path_, "tensor 't'", "implausibly large"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().tensor("t", 0, {1ull << 30, 1ull << 30}, "").bytes()),
                   {path_, "tensor 't'", "overflows"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().tensor("t", 0, {4}, std::string(16, 0), 8).bytes()),
                   {path_, "tensor 't'", "offset 8", "alignment 32"}));
  EXPECT_TRUE(says(open_error(GgufBuilder()
                                  .tensor("a", 0, {16}, std::string(64, 0))
                                  .tensor("b", 0, {8}, std::string(32, 0), 32)
                                  .bytes()),
                   {path_, "'a' and 'b' overlap"}));
  // Claims 64 floats but the data section holds 32 bytes.
  EXPECT_TRUE(says(open_error(GgufBuilder().tensor("t", 0, {64}, std::string(32, 0)).bytes()),
                   {path_, "tensor 't'", "F32 [64]", "cut short"}));
  EXPECT_TRUE(says(open_error(GgufBuilder().u32("general.alignment", 24).bytes()), {path_, "alignment 24"}));
}

TEST_F(GgufBadInput, CustomAlignmentIsHonoured) {
  write_bytes(path_, GgufBuilder()
                         .u32("general.alignment", 64)
                         .alignment(64)
                         .tensor("a", 0, {3}, std::string(12, 0))
                         .tensor("b", 0, {3}, std::string(12, 0))
                         .bytes());
  const GgufModel g = GgufModel::open(path_);
  EXPECT_EQ(g.get("b").info->offset, 64u);
  EXPECT_EQ(g.files()[0]->header().data_offset % 64, 0u);
}

class GgufSplit : public ::testing::Test {
 protected:
  // Part k (0-based) of an n-file set, holding tensor "t<k>".
  std::string part(int k, int n, int total_tensors) {
    GgufBuilder b;
    b.string("general.architecture", "deepseek2");
    b.kv_raw("split.no", 2, GgufBuilder::le<uint16_t>(uint16_t(k)));
    b.kv_raw("split.count", 2, GgufBuilder::le<uint16_t>(uint16_t(n)));
    if (k == 0) b.i32("split.tensors.count", total_tensors);
    b.tensor("t" + std::to_string(k), 0, {2}, std::string(8, char(k)));
    return b.bytes();
  }
  std::string name(int k, int n) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "m-%05d-of-%05d.gguf", k + 1, n);
    return dir_.file(buf);
  }
  TempDir dir_{"gguf-split"};
};

TEST_F(GgufSplit, OpensEveryPartFromAnyOfThem) {
  for (int k = 0; k < 3; ++k) write_bytes(name(k, 3), part(k, 3, 3));
  for (int k = 0; k < 3; ++k) {
    const GgufModel g = GgufModel::open(name(k, 3));
    EXPECT_EQ(g.files().size(), 3u);
    EXPECT_EQ(g.tensors().size(), 3u);
    EXPECT_EQ(g.get("t2").file->path(), name(2, 3));
    EXPECT_EQ(g.metadata().integer("split.tensors.count"), 3);
  }
}

TEST_F(GgufSplit, BrokenSetsAreRejected) {
  write_bytes(name(0, 3), part(0, 3, 3));
  write_bytes(name(2, 3), part(2, 3, 3));
  EXPECT_TRUE(says(error_of([&] { GgufModel::open(name(0, 3)); }), {name(1, 3), "missing", "split set"}));
  write_bytes(name(1, 3), part(2, 3, 3));  // part 3's content under part 2's name
  EXPECT_TRUE(says(error_of([&] { GgufModel::open(name(0, 3)); }), {name(1, 3), "split.no is 2"}));
  write_bytes(name(1, 3), part(1, 3, 3));
  write_bytes(name(0, 3), part(0, 3, 4));
  EXPECT_TRUE(says(error_of([&] { GgufModel::open(name(0, 3)); }), {"split.tensors.count is 4", "3 tensors"}));
  write_bytes(name(0, 3), part(0, 2, 3));
  EXPECT_TRUE(says(error_of([&] { GgufModel::open(name(0, 3)); }), {name(0, 3), "split.count is 2"}));
}

// ---- deepseek2 names and metadata ----

TEST(GgufNames, HfToGguf) {
  auto n = [](const char* hf) { return gguf::tensor_name(hf); };
  EXPECT_EQ(n("model.embed_tokens.weight")->name, "token_embd.weight");
  EXPECT_EQ(n("lm_head.weight")->name, "output.weight");
  EXPECT_EQ(n("model.norm.weight")->name, "output_norm.weight");
  EXPECT_EQ(n("model.layers.12.self_attn.kv_a_proj_with_mqa.weight")->name, "blk.12.attn_kv_a_mqa.weight");
  EXPECT_EQ(n("model.layers.0.self_attn.q_proj.weight")->name, "blk.0.attn_q.weight");
  EXPECT_EQ(n("model.layers.3.mlp.gate.e_score_correction_bias")->name, "blk.3.exp_probs_b.bias");
  EXPECT_EQ(n("model.layers.3.mlp.shared_experts.down_proj.weight")->name, "blk.3.ffn_down_shexp.weight");
  const auto e = n("model.layers.5.mlp.experts.255.up_proj.weight");
  EXPECT_EQ(e->name, "blk.5.ffn_up_exps.weight");
  EXPECT_EQ(e->expert, 255);
  EXPECT_EQ(n("model.layers.61.eh_proj.weight")->name, "blk.61.nextn.eh_proj.weight");
  EXPECT_FALSE(n("model.layers.1.self_attn.q_a_proj.weight_scale_inv"));
  EXPECT_FALSE(n("model.layers.x.mlp.gate.weight"));
  EXPECT_FALSE(n("model.layers.1.mlp.experts.1x.up_proj.weight"));
  EXPECT_EQ(gguf::kv_b_split_names(7).k_b, "blk.7.attn_k_b.weight");
}

TEST(GgufNames, KjvMetadataIsTheCheckpointsConfig) {
  const GgufModel g = GgufModel::open(kKjv + "kjv-BF16.gguf");
  const ModelConfig c = gguf::config_from_gguf(g);
  ModelConfig want = ModelConfig::from_file(std::string(DSV3_TESTDATA_DIR) + "/../models/dsv3-kjv/config.json");
  want.fp8 = false;                   // BF16 weights
  want.num_nextn_predict_layers = 0;  // llama.cpp's converter drops the MTP layer
  want.rms_norm_eps = double(float(want.rms_norm_eps));  // stored as f32
  EXPECT_EQ(c.to_json().dump(), want.to_json().dump());
}

TEST(GgufNames, MetadataRoundTrips) {
  ModelConfig c = ModelConfig::from_file(std::string(DSV3_TESTDATA_DIR) + "/configs/deepseek-v3-671b/config.json");
  c.fp8 = false;
  GgufBuilder b;
  for (const auto& [k, v] : gguf::metadata_from_config(c, {.mtp = true})) {
    if (v.type == GgufValueType::U32) b.u32(k, uint32_t(std::get<uint64_t>(v.scalar)));
    else if (v.type == GgufValueType::F32) b.f32(k, float(std::get<double>(v.scalar)));
    else if (v.type == GgufValueType::BOOL) b.boolean(k, std::get<bool>(v.scalar));
    else b.string(k, std::get<std::string>(v.scalar));
  }
  b.u32("tokenizer.ggml.bos_token_id", uint32_t(c.bos_token_id));
  b.u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos_token_ids.at(0)));
  const std::string bytes = b.bytes();
  const GgufHeader h = parse_gguf_header({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "v3.gguf");
  const ModelConfig back = gguf::config_from_metadata(h.metadata, true, true);
  // f32 storage rounds the floating-point fields; compare them as float.
  for (ModelConfig* x : {&c}) {
    x->rms_norm_eps = double(float(x->rms_norm_eps));
    x->rope_theta = double(float(x->rope_theta));
    x->routed_scaling_factor = double(float(x->routed_scaling_factor));
    auto& y = *x->rope_scaling;
    y.factor = double(float(y.factor));
    y.mscale_all_dim = double(float(double(float(0.1 * y.mscale_all_dim)) / 0.1));
    y.mscale = y.mscale_all_dim;
  }
  EXPECT_EQ(back.to_json().dump(), c.to_json().dump());
}

TEST(GgufNames, BothKeyLengthConventions) {
  auto base = [] {
    GgufBuilder b;
    b.string("general.architecture", "deepseek2").u32("deepseek2.vocab_size", 64).u32("deepseek2.block_count", 1);
    b.u32("deepseek2.embedding_length", 32).u32("deepseek2.feed_forward_length", 64);
    b.u32("deepseek2.attention.head_count", 2).u32("deepseek2.context_length", 128);
    b.f32("deepseek2.attention.layer_norm_rms_epsilon", 1e-6f).u32("deepseek2.attention.kv_lora_rank", 16);
    b.u32("deepseek2.rope.dimension_count", 8);
    return b;
  };
  auto config = [](const GgufBuilder& b) {
    const std::string bytes = b.bytes();
    const GgufHeader h = parse_gguf_header({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "m.gguf");
    return gguf::config_from_metadata(h.metadata, true, false);
  };
  // Before MLA support: per-head sizes under key_length / value_length; no q-LoRA (V2-Lite).
  const ModelConfig old_style = config(base().u32("deepseek2.attention.key_length", 24).u32(
      "deepseek2.attention.value_length", 12));
  EXPECT_EQ(old_style.qk_nope_head_dim, 16);
  EXPECT_EQ(old_style.v_head_dim, 12);
  EXPECT_EQ(old_style.q_lora_rank, 0);
  EXPECT_EQ(old_style.model_type, "deepseek_v2");
  // Since: MQA sizes there, per-head sizes under *_mla.
  const ModelConfig mla = config(base()
                                     .u32("deepseek2.attention.key_length", 24)
                                     .u32("deepseek2.attention.value_length", 16)
                                     .u32("deepseek2.attention.key_length_mla", 24)
                                     .u32("deepseek2.attention.value_length_mla", 12));
  EXPECT_EQ(mla.qk_nope_head_dim, 16);
  EXPECT_EQ(mla.v_head_dim, 12);
  EXPECT_TRUE(says(error_of([&] {
                     config(base()
                                .u32("deepseek2.attention.key_length", 99)
                                .u32("deepseek2.attention.key_length_mla", 24)
                                .u32("deepseek2.attention.value_length_mla", 12));
                   }),
                   {"m.gguf", "key_length", "99"}));
  EXPECT_TRUE(says(error_of([&] { config(base().u32("deepseek2.attention.key_length", 24)); }),
                   {"m.gguf", "missing metadata 'deepseek2.attention.value_length'"}));
  GgufBuilder llama;
  llama.string("general.architecture", "llama");
  EXPECT_TRUE(says(error_of([&] { config(llama); }), {"m.gguf", "'llama' is not supported"}));
}

// block_count counts the MTP layers, as llama.cpp's converter writes it; the reader takes
// them off again, and refuses a count that leaves no main layer.
TEST(GgufNames, BlockCountCountsTheMtpLayers) {
  const ModelConfig c = ModelConfig::from_file(std::string(DSV3_TESTDATA_DIR) + "/configs/deepseek-v3-671b/config.json");
  auto build = [&](bool mtp, int64_t nextn_override) {
    GgufBuilder b;
    for (const auto& [k, v] : gguf::metadata_from_config(c, {.mtp = mtp})) {
      if (k == "deepseek2.nextn_predict_layers" && nextn_override >= 0) b.u32(k, uint32_t(nextn_override));
      else if (v.type == GgufValueType::U32) b.u32(k, uint32_t(std::get<uint64_t>(v.scalar)));
      else if (v.type == GgufValueType::F32) b.f32(k, float(std::get<double>(v.scalar)));
      else if (v.type == GgufValueType::BOOL) b.boolean(k, std::get<bool>(v.scalar));
      else b.string(k, std::get<std::string>(v.scalar));
    }
    const std::string bytes = b.bytes();
    return parse_gguf_header({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "v3.gguf");
  };
  const GgufHeader with = build(true, -1), without = build(false, -1);
  EXPECT_EQ(with.metadata.integer("deepseek2.block_count"), 62);
  EXPECT_EQ(without.metadata.integer("deepseek2.block_count"), 61);
  EXPECT_FALSE(without.metadata.has("deepseek2.nextn_predict_layers"));
  const ModelConfig a = gguf::config_from_metadata(with.metadata, true, true);
  EXPECT_EQ(a.num_hidden_layers, 61);
  EXPECT_EQ(a.num_nextn_predict_layers, 1);
  const ModelConfig b = gguf::config_from_metadata(without.metadata, true, true);
  EXPECT_EQ(b.num_hidden_layers, 61);
  EXPECT_EQ(b.num_nextn_predict_layers, 0);
  EXPECT_TRUE(says(error_of([&] { gguf::config_from_metadata(build(true, 62).metadata, true, true); }),
                   {"v3.gguf", "nextn_predict_layers", "block_count"}));
}

TEST(GgufNames, YarnKeys) {
  ModelConfig c = ModelConfig::from_file(std::string(DSV3_TESTDATA_DIR) + "/configs/deepseek-v3-671b/config.json");
  ASSERT_TRUE(c.rope_scaling);
  bool saw_log_mul = false;
  for (const auto& [k, v] : gguf::metadata_from_config(c))
    if (k == "deepseek2.rope.scaling.yarn_log_multiplier") {
      saw_log_mul = true;
      EXPECT_NEAR(std::get<double>(v.scalar), 0.1 * c.rope_scaling->mscale_all_dim, 1e-7);
    }
  EXPECT_TRUE(saw_log_mul);
}

}  // namespace
}  // namespace dsv3
