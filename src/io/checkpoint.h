// A Hugging Face checkpoint folder: config.json plus one or more safetensors files, tied
// together by model.safetensors.index.json when sharded. Tensors are looked up by their HF
// names and returned as zero-copy views into the mapped files.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace dsv3 {

struct TensorLocation {
  const SafetensorsFile* file;
  const SafetensorsEntry* entry;
};

class Checkpoint {
 public:
  // Opens `dir`: maps every shard named by model.safetensors.index.json, or every *.safetensors
  // file in the folder when there is no index. With `weights_required` false, a folder with only
  // config.json (and maybe an index) opens too; has_weights() then says false.
  // `opt` says how shards are brought into memory (mapped by default).
  static Checkpoint open(const std::string& dir, bool weights_required = true, const LoadOptions& opt = {});

  const std::string& dir() const { return dir_; }
  bool has_weights() const { return !files_.empty(); }
  // Total bytes of the shards.
  uint64_t file_bytes() const;
  // Maps every page of every mapped shard now (MappedFile::populate): for measurements that
  // must not count first-touch page faults. Never done by default, so opening stays free.
  void populate() const;
  // The shards' bytes this process holds in RAM now, and how many of them are mapped with huge
  // pages (io residency: decode reads every weight per token, so huge pages decide its TLB
  // misses). nullopt where it cannot be read.
  std::optional<Residency> residency() const;
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws dsv3::Error "<dir>: missing tensor '<name>'" when absent.
  TensorView get(const std::string& name) const;
  // File that holds `name` (for error messages).
  std::string file_of(const std::string& name) const;
  const std::map<std::string, TensorLocation>& tensors() const { return tensors_; }
  // Names the index lists (may be present without any shard being mapped; used by inspect).
  const std::map<std::string, std::string>& index_names() const { return index_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorLocation> tensors_;
  std::map<std::string, std::string> index_;  // tensor name -> shard file name
};

}  // namespace dsv3
