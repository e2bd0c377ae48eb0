#include "io/gguf_writer.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"

namespace dsv3 {

namespace {

// GGUF value type ids (gguf.h enum gguf_type).
constexpr uint32_t kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9;
constexpr uint32_t kVersion = 3;
constexpr size_t kMaxName = 63;  // GGML_MAX_NAME (64) less the terminating zero

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // GGUF is little-endian, as every host dsv3 builds for
  out.insert(out.end(), b, b + sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

uint64_t align_up(uint64_t n) { return (n + GgufWriter::kAlignment - 1) / GgufWriter::kAlignment * GgufWriter::kAlignment; }

}  // namespace

bool GgufWriter::has(const std::string& key) const { return std::find(keys_.begin(), keys_.end(), key) != keys_.end(); }

void GgufWriter::add_key(const std::string& key, uint32_t value_type) {
  DSV3_CHECK(!key.empty() && !has(key), "gguf: metadata key '", key, "' is empty or set twice");
  keys_.push_back(key);
  put_string(kv_, key);
  put<uint32_t>(kv_, value_type);
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
  add_key(key, kU32);
  put(kv_, v);
}
void GgufWriter::set_i32(const std::string& key, int32_t v) {
  add_key(key, kI32);
  put(kv_, v);
}
void GgufWriter::set_f32(const std::string& key, float v) {
  add_key(key, kF32);
  put(kv_, v);
}
void GgufWriter::set_bool(const std::string& key, bool v) {
  add_key(key, kBool);
  put<uint8_t>(kv_, v ? 1 : 0);
}
void GgufWriter::set_string(const std::string& key, const std::string& v) {
  add_key(key, kString);
  put_string(kv_, v);
}
void GgufWriter::set(const std::string& key, const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::U32: return set_u32(key, uint32_t(std::get<uint64_t>(v.scalar)));
    case GgufValueType::I32: return set_i32(key, int32_t(std::get<int64_t>(v.scalar)));
    case GgufValueType::F32: return set_f32(key, float(std::get<double>(v.scalar)));
    case GgufValueType::BOOL: return set_bool(key, std::get<bool>(v.scalar));
    case GgufValueType::STRING: return set_string(key, std::get<std::string>(v.scalar));
    default: throw Error(str_cat("GGUF writer: key '", key, "' has a value type this writer does not write"));
  }
}
void GgufWriter::set_strings(const std::string& key, const std::vector<std::string>& v) {
  add_key(key, kArray);
  put<uint32_t>(kv_, kString);
  put<uint64_t>(kv_, v.size());
  for (const std::string& s : v) put_string(kv_, s);
}
void GgufWriter::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  add_key(key, kArray);
  put<uint32_t>(kv_, kI32);
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}

size_t GgufWriter::add_tensor(const std::string& name, uint32_t ggml_type, const Shape& shape, uint64_t nbytes) {
  DSV3_CHECK(!name.empty() && name.size() <= kMaxName, "gguf: tensor name '", name, "' is empty or longer than ",
             kMaxName, " bytes");
  DSV3_CHECK(shape.rank >= 1, "gguf: tensor '", name, "' has no dimensions");
  for (const Tensor& t : tensors_) DSV3_CHECK(t.name != name, "gguf: tensor '", name, "' added twice");
  tensors_.push_back({name, ggml_type, shape, nbytes});
  return tensors_.size() - 1;
}

uint64_t GgufWriter::data_bytes() const {
  uint64_t n = 0;
  for (const Tensor& t : tensors_) n += t.nbytes;
  return n;
}

void GgufWriter::write(const std::string& path, const std::function<void(size_t, const Sink&)>& fill) const {
  std::vector<uint8_t> header;
  header.insert(header.end(), {'G', 'G', 'U', 'F'});
  put<uint32_t>(header, kVersion);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, keys_.size());
  header.insert(header.end(), kv_.begin(), kv_.end());
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(header, t.name);
    put<uint32_t>(header, uint32_t(t.shape.rank));
    for (int d = t.shape.rank - 1; d >= 0; --d) put<uint64_t>(header, uint64_t(t.shape[d]));
    put<uint32_t>(header, t.ggml_type);
    put<uint64_t>(header, offset);
    offset = align_up(offset + t.nbytes);
  }
  header.resize(align_up(header.size()), 0);

  write_file_atomic(path, [&](std::FILE* f) {
    write_all(f, header.data(), header.size(), path);
    static constexpr uint8_t kZeros[kAlignment] = {};
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = tensors_[i];
      uint64_t written = 0;
      fill(i, [&](std::span<const uint8_t> piece) {
        DSV3_ASSERT(written + piece.size() <= t.nbytes);
        write_all(f, piece.data(), piece.size(), path);
        written += piece.size();
      });
      DSV3_CHECK(written == t.nbytes, path, ": tensor '", t.name, "' got ", written, " of its ", t.nbytes, " bytes");
      write_all(f, kZeros, align_up(t.nbytes) - t.nbytes, path);
    }
  }, AtomicWriteOptions{.drop_from_page_cache = true});
}

}  // namespace dsv3
