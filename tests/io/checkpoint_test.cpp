// Checkpoint folders: sharded and single-file layouts load; a missing, extra, misshapen or
// unscaled tensor, or a broken index, is one Error naming the file, the tensor and the fault.
#include "io/checkpoint.h"

#include <gtest/gtest.h>

#include "checkpoint_builder.h"
#include "model/transformer.h"

namespace dsv3 {
namespace {

using namespace dsv3::testing;
using json = nlohmann::json;

constexpr const char* kExpertDown = "model.layers.1.mlp.experts.3.down_proj.weight";
constexpr const char* kOProj = "model.layers.0.self_attn.o_proj.weight";

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { tensors_ = checkpoint_tensors(config_); }
  void write(size_t shards = 1) { write_checkpoint(dir_.path().string(), config_, tensors_, shards); }
  std::string load_error() {
    return error_of([&] { load_model(dir_.path().string()); });
  }
  std::string file(const std::string& name) const { return dir_.file(name); }

  TempDir dir_{"ckpt"};
  ModelConfig config_ = small_test_config();
  std::vector<TensorDef> tensors_;
};

TEST_F(CheckpointTest, SingleFileLoads) {
  write();
  const LoadedModel m = load_model(dir_.path().string());
  EXPECT_EQ(m.checkpoint->tensors().size(), tensors_.size());
  EXPECT_EQ(m.checkpoint->file_of(kOProj), file("model.safetensors"));
  EXPECT_EQ(m.model->weights().layers.size(), 2u);
  EXPECT_TRUE(m.model->weights().layers[1].is_moe);
}

TEST_F(CheckpointTest, MultiShardThroughIndexLoads) {
  write(/*shards=*/3);
  const Checkpoint ck = Checkpoint::open(dir_.path().string());
  ASSERT_EQ(ck.tensors().size(), tensors_.size());
  std::set<std::string> files;
  for (const auto& [name, loc] : ck.tensors()) {
    files.insert(loc.file->path());
    EXPECT_EQ(std::filesystem::path(loc.file->path()).filename().string(), ck.index_names().at(name)) << name;
  }
  EXPECT_EQ(files.size(), 3u);
  // Data of a tensor in the last shard is what the builder wrote.
  const size_t i = tensors_.size() - 1;
  const TensorView v = ck.get(tensors_[i].name);
  std::vector<uint8_t> want(v.nbytes());
  fill_tensor(tensors_[i], i, want);
  EXPECT_EQ(std::memcmp(v.data, want.data(), want.size()), 0);
  EXPECT_NO_THROW(load_model(dir_.path().string()));
}

TEST_F(CheckpointTest, MissingTensor) {
  erase_def(tensors_, kExpertDown);
  erase_def(tensors_, std::string(kExpertDown) + "_scale_inv");
  write();
  EXPECT_TRUE(says(load_error(), {dir_.path().string(), "missing tensor", std::string("'") + kExpertDown + "'"}));
}

TEST_F(CheckpointTest, MissingTensorThatTheIndexPlacesInAShard) {
  write(/*shards=*/2);
  // Rewrite the index so that it also lists a tensor no shard holds.
  json index = json::parse(read_bytes(file("model.safetensors.index.json")));
  index["weight_map"]["model.layers.0.mlp.gate_proj.bias"] = shard_name(1, 2);
  write_bytes(file("model.safetensors.index.json"), index.dump());
  EXPECT_TRUE(says(load_error(), {file(shard_name(1, 2)), "missing tensor 'model.layers.0.mlp.gate_proj.bias'"}));
}

TEST_F(CheckpointTest, MissingScaleInvOfAnFp8Weight) {
  erase_def(tensors_, std::string(kOProj) + "_scale_inv");
  write();
  EXPECT_TRUE(says(load_error(), {file("model.safetensors"), std::string("tensor '") + kOProj + "'",
                                  std::string(kOProj) + "_scale_inv", "FP8"}));
}

TEST_F(CheckpointTest, WrongScaleShape) {
  find_def(tensors_, std::string(kOProj) + "_scale_inv").shape = Shape{2, 1};
  write();
  EXPECT_TRUE(says(load_error(), {file("model.safetensors"), std::string(kOProj) + "_scale_inv", "[2, 1]",
                                  "expected [1, 1]"}));
}

TEST_F(CheckpointTest, WrongScaleDtype) {
  find_def(tensors_, std::string(kOProj) + "_scale_inv").dtype = DType::BF16;
  write();
  EXPECT_TRUE(says(load_error(), {file("model.safetensors"), std::string(kOProj) + "_scale_inv", "BF16", "F32"}));
}

TEST_F(CheckpointTest, TensorShapeDoesNotMatchTheConfig) {
  find_def(tensors_, kOProj).shape = Shape{32, 64};  // transposed: config wants [dim, n_heads * v_head_dim]
  write();
  EXPECT_TRUE(says(load_error(), {file("model.safetensors"), std::string("'") + kOProj + "'", "[32, 64]",
                                  "expected [64, 32]"}));
}

TEST_F(CheckpointTest, CheckpointForADifferentConfig) {
  write();
  ModelConfig deeper = config_;
  deeper.num_hidden_layers = 3;  // the folder only has two layers
  write_bytes(file("config.json"), deeper.to_json().dump());
  EXPECT_TRUE(says(load_error(), {"missing tensor", "model.layers.2."}));
}

TEST_F(CheckpointTest, UnexpectedExtraTensor) {
  tensors_.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", DType::F32, Shape{4}});
  write();
  EXPECT_TRUE(says(load_error(), {file("model.safetensors"), "'model.layers.0.self_attn.rotary_emb.inv_freq'",
                                  "not part of a model"}));
}

TEST_F(CheckpointTest, Fp8OnlyForLinearWeights) {
  find_def(tensors_, "model.norm.weight").dtype = DType::F8_E4M3;
  write();
  EXPECT_TRUE(says(load_error(), {file("model.safetensors"), "'model.norm.weight'", "F8_E4M3"}));
}

TEST_F(CheckpointTest, UnsupportedDtypeForAWeight) {
  find_def(tensors_, "model.embed_tokens.weight").dtype = DType::I16;
  write();
  EXPECT_TRUE(says(load_error(), {file("model.safetensors"), "'model.embed_tokens.weight'", "I16"}));
}

TEST_F(CheckpointTest, DamagedShardIsNamed) {
  write(/*shards=*/2);
  const std::string shard = file(shard_name(1, 2));
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) - 100);
  EXPECT_TRUE(says(load_error(), {shard, "beyond the data section"}));
}

TEST_F(CheckpointTest, IndexNamesAMissingShard) {
  write(/*shards=*/3);
  std::filesystem::remove(file(shard_name(2, 3)));
  EXPECT_TRUE(says(load_error(), {file(shard_name(2, 3)), "missing", "model.safetensors.index.json"}));
}

TEST_F(CheckpointTest, IndexMalformed) {
  write(/*shards=*/2);
  const std::string index = file("model.safetensors.index.json");
  write_bytes(index, R"({"weight_map": {"a": )");
  EXPECT_TRUE(says(load_error(), {index, "malformed JSON"}));
  write_bytes(index, R"({"metadata": {}})");
  EXPECT_TRUE(says(load_error(), {index, "weight_map"}));
  write_bytes(index, R"([1, 2])");
  EXPECT_TRUE(says(load_error(), {index, "weight_map"}));
  write_bytes(index, R"({"weight_map": {"model.norm.weight": 3}})");
  EXPECT_TRUE(says(load_error(), {index, "'model.norm.weight'", "not a file name"}));
  write_bytes(index, R"({"weight_map": {"model.norm.weight": "../../etc/passwd"}})");
  EXPECT_TRUE(says(load_error(), {index, "'model.norm.weight'", "not a file in the folder"}));
}

TEST_F(CheckpointTest, IndexMapsATensorToAnotherShard) {
  write(/*shards=*/2);
  const std::string index = file("model.safetensors.index.json");
  json j = json::parse(read_bytes(index));
  j["weight_map"]["model.embed_tokens.weight"] = shard_name(1, 2);  // really in shard 1
  write_bytes(index, j.dump());
  EXPECT_TRUE(says(load_error(), {file(shard_name(0, 2)), "'model.embed_tokens.weight'", "not mapped to this file"}));
}

TEST_F(CheckpointTest, SameTensorInTwoFilesWithoutIndex) {
  write(/*shards=*/2);
  std::filesystem::remove(file("model.safetensors.index.json"));
  std::filesystem::copy_file(file(shard_name(0, 2)), file("copy.safetensors"));
  EXPECT_TRUE(says(load_error(), {"copy.safetensors", shard_name(0, 2), "also in"}));
}

TEST_F(CheckpointTest, MissingConfigOrWeights) {
  write();
  std::filesystem::remove(file("config.json"));
  EXPECT_TRUE(says(load_error(), {file("config.json"), "cannot open"}));
  write();
  std::filesystem::remove(file("model.safetensors"));
  EXPECT_TRUE(says(load_error(), {dir_.path().string(), "no *.safetensors"}));
  EXPECT_TRUE(says(error_of([&] { load_model(file("absent")); }), {file("absent")}));
}

TEST_F(CheckpointTest, ConfigOnlyFolderOpensWithoutWeightsWhenAllowed) {
  write(/*shards=*/2);
  std::filesystem::remove(file(shard_name(0, 2)));
  std::filesystem::remove(file(shard_name(1, 2)));
  const Checkpoint ck = Checkpoint::open(dir_.path().string(), /*weights_required=*/false);
  EXPECT_FALSE(ck.has_weights());
  EXPECT_EQ(ck.index_names().size(), tensors_.size());
  EXPECT_TRUE(says(error_of([&] { Checkpoint::open(dir_.path().string()); }), {shard_name(0, 2), "missing"}));
}

}  // namespace
}  // namespace dsv3
