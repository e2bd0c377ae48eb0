// Streaming GGUF (version 3) writer: typed metadata and tensor descriptions are declared first,
// then each tensor's bytes are produced in order, piece by piece, so writing a file never holds
// more than the caller's pieces in memory. The file is written atomically (io/atomic_file.h).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/gguf.h"

namespace dsv3 {

class GgufWriter {
 public:
  // Metadata, written in the order set. A key may be set once; names and values are what
  // llama.cpp's gguf-py writes for them (GGUF value types U32, I32, F32, BOOL, STRING, ARRAY).
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);
  // A scalar value (U32, I32, F32, BOOL or STRING) as the reader returns it.
  void set(const std::string& key, const GgufValue& v);
  bool has(const std::string& key) const;

  // Declares a tensor of ggml type `ggml_type` (enum ggml_type) and `shape` in PyTorch order
  // (the file stores it reversed: ne0 is shape's last dimension) taking `nbytes` bytes.
  // Returns its index. Names must be unique and shorter than 64 bytes (GGML_MAX_NAME).
  size_t add_tensor(const std::string& name, uint32_t ggml_type, const Shape& shape, uint64_t nbytes);
  size_t tensor_count() const { return tensors_.size(); }
  const std::string& tensor_name(size_t i) const { return tensors_[i].name; }
  uint64_t tensor_bytes(size_t i) const { return tensors_[i].nbytes; }
  uint64_t data_bytes() const;  // all tensors, without alignment padding

  // Data alignment (general.alignment; ggml's default is 32). A power of two.
  static constexpr uint64_t kAlignment = 32;

  // Writes `path` atomically: fill(i, sink) is called for every tensor in declaration order and
  // must pass exactly the declared bytes of tensor i to sink, in as many pieces as it likes.
  // Anything thrown from fill (an interrupt, a bad input) leaves no file behind.
  using Sink = std::function<void(std::span<const uint8_t>)>;
  void write(const std::string& path, const std::function<void(size_t i, const Sink& sink)>& fill) const;

 private:
  struct Tensor {
    std::string name;
    uint32_t ggml_type;
    Shape shape;
    uint64_t nbytes;
  };
  void add_key(const std::string& key, uint32_t value_type);
  std::vector<uint8_t> kv_;  // serialized key/value pairs
  std::vector<std::string> keys_;
  std::vector<Tensor> tensors_;
};

}  // namespace dsv3
