#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace dsv3 {

namespace fs = std::filesystem;

uint64_t Checkpoint::file_bytes() const {
  uint64_t n = 0;
  for (const auto& f : files_) n += std::filesystem::file_size(f->path());
  return n;
}

void Checkpoint::populate() const {
  for (const auto& f : files_) f->populate();
}

std::optional<Residency> Checkpoint::residency() const {
  std::vector<std::span<const uint8_t>> ranges;
  for (const auto& f : files_) ranges.push_back(f->bytes());
  return dsv3::residency(ranges);
}

Checkpoint Checkpoint::open(const std::string& dir, bool weights_required, const LoadOptions& opt) {
  Checkpoint ck;
  ck.dir_ = dir;
  DSV3_CHECK(fs::is_directory(dir), dir, ": not a checkpoint folder (not a directory)");

  std::vector<std::string> shard_names;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    std::ifstream f(index_path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(f);
    } catch (const nlohmann::json::exception& e) {
      fail(index_path.string(), ": malformed JSON: ", e.what());
    }
    DSV3_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
               index_path.string(), ": missing object 'weight_map'");
    std::set<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      DSV3_CHECK(it.value().is_string(), index_path.string(), ": weight_map entry '", it.key(),
                 "' is not a file name");
      const std::string shard = it.value().get<std::string>();
      DSV3_CHECK(shard.find('/') == std::string::npos && shard != ".." && !shard.empty(),
                 index_path.string(), ": weight_map entry '", it.key(), "' names '", shard,
                 "', which is not a file in the folder");
      ck.index_[it.key()] = shard;
      shards.insert(shard);
    }
    shard_names.assign(shards.begin(), shards.end());
    bool any = false;
    for (const auto& s : shard_names) any = any || fs::exists(fs::path(dir) / s);
    if (!weights_required && !any) return ck;
    for (const auto& s : shard_names)
      DSV3_CHECK(fs::exists(fs::path(dir) / s), (fs::path(dir) / s).string(),
                 ": shard named by model.safetensors.index.json is missing");
  } else {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors")
        shard_names.push_back(e.path().filename().string());
    std::sort(shard_names.begin(), shard_names.end());
    if (shard_names.empty()) {
      DSV3_CHECK(!weights_required, dir, ": no *.safetensors files and no model.safetensors.index.json");
      return ck;
    }
  }

  for (const auto& s : shard_names) {
    ck.files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / s).string(), opt));
    const SafetensorsFile* file = ck.files_.back().get();
    for (const auto& e : file->entries()) {
      auto [it, inserted] = ck.tensors_.emplace(e.name, TensorLocation{file, &e});
      DSV3_CHECK(inserted, file->path(), ": tensor '", e.name, "' is also in ", it->second.file->path());
      if (!ck.index_.empty()) {
        auto ix = ck.index_.find(e.name);
        DSV3_CHECK(ix != ck.index_.end() && ix->second == s, file->path(), ": tensor '", e.name,
                   "' is not mapped to this file by model.safetensors.index.json");
      }
    }
  }
  for (const auto& [name, shard] : ck.index_)
    DSV3_CHECK(ck.tensors_.count(name), (fs::path(dir) / shard).string(), ": missing tensor '", name,
               "' that model.safetensors.index.json places in this file");
  return ck;
}

TensorView Checkpoint::get(const std::string& name) const {
  auto it = tensors_.find(name);
  DSV3_CHECK(it != tensors_.end(), dir_, ": missing tensor '", name, "'");
  return it->second.file->view(*it->second.entry);
}

std::string Checkpoint::file_of(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? dir_ : it->second.file->path();
}

}  // namespace dsv3
