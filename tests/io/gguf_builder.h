// Hand-made GGUF bytes for the reader's tests: metadata of any type, tensors with their data
// laid out as llama.cpp's writer lays them out (aligned, in order), and hooks to damage them.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace dsv3::testing {

class GgufBuilder {
 public:
  // Raw little-endian pieces, for building values by hand.
  template <typename T>
  static std::string le(T v) {
    std::string s(sizeof(T), '\0');
    std::memcpy(s.data(), &v, sizeof(T));
    return s;
  }
  static std::string str(const std::string& s) { return le<uint64_t>(s.size()) + s; }

  // A metadata entry whose value (type id and payload) is given raw.
  GgufBuilder& kv_raw(const std::string& key, uint32_t type, const std::string& payload) {
    kv_.push_back(str(key) + le(type) + payload);
    return *this;
  }
  GgufBuilder& u32(const std::string& key, uint32_t v) { return kv_raw(key, 4, le(v)); }
  GgufBuilder& i32(const std::string& key, int32_t v) { return kv_raw(key, 5, le(v)); }
  GgufBuilder& u64(const std::string& key, uint64_t v) { return kv_raw(key, 10, le(v)); }
  GgufBuilder& f32(const std::string& key, float v) { return kv_raw(key, 6, le(v)); }
  GgufBuilder& boolean(const std::string& key, bool v) { return kv_raw(key, 7, std::string(1, char(v))); }
  GgufBuilder& string(const std::string& key, const std::string& v) { return kv_raw(key, 8, str(v)); }
  GgufBuilder& strings(const std::string& key, const std::vector<std::string>& v) {
    std::string p = le<uint32_t>(8) + le<uint64_t>(v.size());
    for (const auto& s : v) p += str(s);
    return kv_raw(key, 9, p);
  }
  GgufBuilder& i32s(const std::string& key, const std::vector<int32_t>& v) {
    std::string p = le<uint32_t>(5) + le<uint64_t>(v.size());
    for (int32_t x : v) p += le(x);
    return kv_raw(key, 9, p);
  }

  // A tensor of ggml type `type` and dims `ne` (ggml order) holding `data`; placed after the
  // previous one at the next aligned offset unless `offset` is given.
  GgufBuilder& tensor(const std::string& name, uint32_t type, const std::vector<uint64_t>& ne, std::string data,
                      std::optional<uint64_t> offset = std::nullopt) {
    tensors_.push_back({name, type, ne, std::move(data), offset});
    return *this;
  }
  GgufBuilder& version(uint32_t v) {
    version_ = v;
    return *this;
  }
  GgufBuilder& alignment(uint64_t a) {  // layout only; add general.alignment yourself to declare it
    alignment_ = a;
    return *this;
  }

  std::string bytes() const {
    std::string out = "GGUF" + le(version_) + le<uint64_t>(tensors_.size()) + le<uint64_t>(kv_.size());
    for (const auto& k : kv_) out += k;
    std::vector<uint64_t> offsets;
    uint64_t next = 0;
    for (const auto& t : tensors_) {
      const uint64_t off = t.offset ? *t.offset : next;
      offsets.push_back(off);
      next = std::max(next, (off + t.data.size() + alignment_ - 1) / alignment_ * alignment_);
      out += str(t.name) + le<uint32_t>(uint32_t(t.ne.size()));
      for (uint64_t d : t.ne) out += le(d);
      out += le(t.type) + le(off);
    }
    out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, '\0');
    const size_t data_start = out.size();
    out.resize(data_start + next, '\0');
    for (size_t i = 0; i < tensors_.size(); ++i)
      if (offsets[i] + tensors_[i].data.size() <= next)
        std::memcpy(out.data() + data_start + offsets[i], tensors_[i].data.data(), tensors_[i].data.size());
    return out;
  }

 private:
  struct Tensor {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> ne;
    std::string data;
    std::optional<uint64_t> offset;
  };
  uint32_t version_ = 3;
  uint64_t alignment_ = 32;
  std::vector<std::string> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace dsv3::testing
