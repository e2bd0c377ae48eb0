#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {

namespace {
// A header larger than this is not a checkpoint header (the 671B model's largest is ~100 KB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
}  // namespace

SafetensorsHeader parse_safetensors_header(std::span<const uint8_t> bytes, const std::string& what) {
  DSV3_CHECK(bytes.size() >= 8, what, ": truncated safetensors file (", bytes.size(),
             " bytes, need at least 8 for the header length)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  DSV3_CHECK(n <= kMaxHeaderBytes, what, ": header length ", n, " is implausibly large");
  DSV3_CHECK(n <= bytes.size() - 8, what, ": header length ", n, " goes beyond the end of the file (",
             bytes.size(), " bytes)");
  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = bytes.size() - h.data_offset;

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    fail(what, ": malformed JSON header: ", e.what());
  }
  DSV3_CHECK(j.is_object(), what, ": JSON header is not an object");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      DSV3_CHECK(v.is_object(), what, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        DSV3_CHECK(m.value().is_string(), what, ": __metadata__ value '", m.key(), "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](auto... parts) { fail(what, ": tensor '", name, "': ", parts...); };
    if (!v.is_object()) bad("entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad("missing or non-string dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) bad("missing or non-array shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      bad("data_offsets must be an array of two integers");
    SafetensorsEntry e;
    e.name = name;
    const std::string dt = v["dtype"].get<std::string>();
    auto d = dtype_from_name(dt);
    if (!d) bad("unknown dtype '", dt, "'");
    e.dtype = *d;
    const auto& shp = v["shape"];
    if (shp.size() > size_t(Shape::kMaxDims)) bad("rank ", shp.size(), " exceeds ", Shape::kMaxDims);
    // The product of the non-zero dims bounds every partial product, so neither this count nor
    // Shape::numel() (int64) can overflow, whatever the order of the dims or a zero among them.
    uint64_t numel = 1, nonzero = 1;
    for (const auto& s : shp) {
      if (!s.is_number_unsigned()) bad("shape has a non-integer or negative dimension");
      const uint64_t dim = s.get<uint64_t>();
      if (dim > (1ull << 40)) bad("dimension ", dim, " is implausibly large");
      if (dim > 0 && nonzero > (1ull << 50) / dim) bad("element count overflows");
      if (dim > 0) nonzero *= dim;
      numel *= dim;
      e.shape.dims[e.shape.rank++] = int64_t(dim);
    }
    for (const auto& o : v["data_offsets"])
      if (!o.is_number_unsigned()) bad("data_offsets must be non-negative integers");
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    if (e.begin > e.end) bad("data_offsets [", e.begin, ", ", e.end, "] are reversed");
    if (e.end > data_size)
      bad("data_offsets [", e.begin, ", ", e.end, "] go beyond the data section (", data_size,
          " bytes; file truncated?)");
    const uint64_t expect = numel * dtype_size(e.dtype);
    if (e.end - e.begin != expect)
      bad("shape ", e.shape.str(), " x ", dt, " needs ", expect, " bytes but data_offsets give ",
          e.end - e.begin);
    h.tensors.push_back(std::move(e));
  }

  // Overlap check on sorted ranges (empty tensors take no bytes and cannot overlap).
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : h.tensors)
    if (e.end > e.begin) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < sorted.size(); ++i)
    DSV3_CHECK(sorted[i]->begin >= sorted[i - 1]->end, what, ": tensors '", sorted[i - 1]->name,
               "' and '", sorted[i]->name, "' have overlapping data_offsets");
  return h;
}

SafetensorsFile::SafetensorsFile(const std::string& path, const LoadOptions& opt) : file_(path, opt) {
  header_ = parse_safetensors_header(file_.bytes(), path);
}

TensorView SafetensorsFile::view(const SafetensorsEntry& e) const {
  TensorView t;
  t.dtype = e.dtype;
  t.shape = e.shape;
  t.data = file_.data() + header_.data_offset + e.begin;
  return t;
}

}  // namespace dsv3
