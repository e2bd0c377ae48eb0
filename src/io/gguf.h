// The GGUF format (llama.cpp/ggml, version 2 and 3): a header of typed key/value metadata and
// tensor descriptions, then the aligned tensor data. Tensors are zero-copy views into the mapped
// file; the header is validated so that no view can reach outside the file. Split sets
// (NAME-00001-of-0000N.gguf, keys split.*) open as one model.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace dsv3 {

// Metadata value types, numbered as in the file.
enum class GgufValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_value_type_name(GgufValueType t);

// One metadata value. Integers of every width are held as int64 or uint64, floats as double;
// arrays hold their elements (of one type, never arrays themselves).
struct GgufValue {
  using Scalar = std::variant<uint64_t, int64_t, double, bool, std::string>;
  GgufValueType type = GgufValueType::U32;
  GgufValueType array_type = GgufValueType::U32;  // element type when type == ARRAY
  Scalar scalar;
  std::vector<Scalar> array;
};

// The metadata of a file, with typed accessors that throw dsv3::Error naming the file and the
// key ("<file>: metadata 'deepseek2.block_count' must be an integer, found string").
class GgufMetadata {
 public:
  GgufMetadata() = default;
  GgufMetadata(std::string what, std::map<std::string, GgufValue> kv) : what_(std::move(what)), kv_(std::move(kv)) {}

  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const GgufValue* find(const std::string& key) const;
  const std::map<std::string, GgufValue>& entries() const { return kv_; }
  const std::string& what() const { return what_; }

  // Any integer type, range-checked into int64. Absent: `dflt`, or an error when none is given.
  int64_t integer(const std::string& key, std::optional<int64_t> dflt = std::nullopt) const;
  // F32, F64 or any integer type.
  double number(const std::string& key, std::optional<double> dflt = std::nullopt) const;
  bool boolean(const std::string& key, std::optional<bool> dflt = std::nullopt) const;
  std::string string(const std::string& key, std::optional<std::string> dflt = std::nullopt) const;
  // Arrays; an absent key is an error.
  std::vector<std::string> strings(const std::string& key) const;
  std::vector<int64_t> integers(const std::string& key) const;

 private:
  const GgufValue& require(const std::string& key) const;
  std::string what_;
  std::map<std::string, GgufValue> kv_;
};

// Tensor element types of ggml (ggml.h enum ggml_type), numbered as in the file. A tensor's
// rows (ne0 elements) are stored in blocks of `block` elements taking `block_bytes` each.
struct GgmlType {
  uint32_t id;
  std::string_view name;  // "F32", "Q4_K", ...
  int64_t block;          // elements per block
  int64_t block_bytes;    // bytes per block
};
// nullopt for ids ggml does not define (or has retired).
std::optional<GgmlType> ggml_type(uint32_t id);
std::optional<GgmlType> ggml_type_from_name(std::string_view name);
// (The DType the kernels read a ggml type as: dtype_from_ggml_type in core/dtype.h.)

struct GgufTensorInfo {
  std::string name;
  GgmlType type;
  Shape ne;             // ggml order: ne[0] is the contiguous (innermost) dimension
  uint64_t offset = 0;  // from the start of the data section
  uint64_t nbytes = 0;

  // The shape in PyTorch order (ne reversed): a linear weight [ne0 = in, ne1 = out] is [out, in].
  Shape torch_shape() const;
};

struct GgufHeader {
  uint32_t version = 0;
  GgufMetadata metadata;
  std::vector<GgufTensorInfo> tensors;  // in file order
  uint64_t alignment = 32;              // general.alignment
  uint64_t data_offset = 0;             // start of the data section in the file
};

// Parses and validates the GGUF header of a file held in `bytes` (the whole file); `what` names
// it in messages. Checks: magic and version (2 or 3, little-endian), every length and count
// within the file, known value and tensor types, no nested arrays, unique keys and tensor names,
// a power-of-two alignment, every tensor's row a whole number of blocks, its offset aligned,
// its type x shape bytes inside the data section, and no two tensors overlapping. Throws
// dsv3::Error with one line naming the file and, where there is one, the key or tensor.
GgufHeader parse_gguf_header(std::span<const uint8_t> bytes, const std::string& what);

class GgufFile {
 public:
  explicit GgufFile(const std::string& path, const LoadOptions& opt = {});
  const std::string& path() const { return file_.path(); }
  const GgufHeader& header() const { return header_; }
  const GgufMetadata& metadata() const { return header_.metadata; }
  std::span<const uint8_t> bytes() const { return file_.bytes(); }
  void populate() const { file_.populate(); }
  // Start of the tensor's data in memory.
  const uint8_t* data(const GgufTensorInfo& t) const { return file_.data() + header_.data_offset + t.offset; }

 private:
  MappedFile file_;
  GgufHeader header_;
};

// A GGUF model: one file, or every file of a split set. The metadata is the first file's;
// tensors are looked up by name across all files.
class GgufModel {
 public:
  // Opens `path`. A name of the form PREFIX-0000K-of-0000N.gguf opens all N files of the set
  // (whichever K is named); their split.no / split.count / split.tensors.count must agree with
  // the names and with each other. Throws dsv3::Error naming the file and what is wrong.
  static GgufModel open(const std::string& path, const LoadOptions& opt = {});
  // True for paths this reader takes: an existing regular file named *.gguf.
  static bool is_gguf_path(const std::string& path);

  const std::string& path() const { return path_; }
  const GgufMetadata& metadata() const { return files_.front()->metadata(); }
  const std::vector<std::unique_ptr<GgufFile>>& files() const { return files_; }

  struct Location {
    const GgufFile* file;
    const GgufTensorInfo* info;
  };
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws "<path>: missing tensor '<name>'" when absent.
  const Location& get(const std::string& name) const;
  const std::map<std::string, Location>& tensors() const { return tensors_; }

  uint64_t file_bytes() const;
  void populate() const;
  std::optional<Residency> residency() const;  // as Checkpoint::residency

 private:
  std::string path_;
  std::vector<std::unique_ptr<GgufFile>> files_;
  std::map<std::string, Location> tensors_;
};

}  // namespace dsv3
