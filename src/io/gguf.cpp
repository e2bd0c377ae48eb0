#include "io/gguf.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>

#include "core/error.h"

namespace dsv3 {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
// ggml's limits: at most 4 dimensions (GGML_MAX_DIMS); a dimension beyond 2^40 elements or a
// tensor beyond 2^50 elements is no real model (the 671B file's largest is 2^31).
constexpr int kMaxDims = 4;
constexpr uint64_t kMaxDim = 1ull << 40;
constexpr uint64_t kMaxElements = 1ull << 50;

// ggml.c type_traits: block size and bytes per block of every type a file can hold. Ids 4, 5
// (Q4_2, Q4_3) and 31-33, 36-38 (repacked CPU layouts) are retired and never written.
constexpr std::array<GgmlType, 32> kGgmlTypes{{
    {0, "F32", 1, 4},        {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},  {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},        {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},        {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},  {39, "MXFP4", 32, 17},
}};

// Bounds-checked little-endian reader over the header bytes.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> b, const std::string& what) : b_(b), what_(what) {}
  size_t pos() const { return pos_; }

  template <typename T>
  T read(const char* context) {
    need(sizeof(T), context);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const char* context) {
    const uint64_t n = read<uint64_t>(context);
    need(n, context);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }
  void need(uint64_t n, const char* context) const {
    DSV3_CHECK(n <= b_.size() - pos_, what_, ": truncated GGUF header: ", context, " needs ", n, " bytes at byte ",
               pos_, " but the file has ", b_.size(), " (file cut short?)");
  }
  uint64_t remaining() const { return b_.size() - pos_; }

 private:
  std::span<const uint8_t> b_;
  const std::string& what_;
  size_t pos_ = 0;
};

size_t min_value_bytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::BOOL: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: case GgufValueType::STRING: return 8;
    case GgufValueType::ARRAY: return 12;
  }
  return 1;
}

bool known_value_type(uint32_t t) { return t <= 12; }

GgufValue::Scalar read_scalar(Cursor& c, GgufValueType t, const std::string& what, const std::string& key) {
  const char* ctx = "a metadata value";
  switch (t) {
    case GgufValueType::U8: return uint64_t(c.read<uint8_t>(ctx));
    case GgufValueType::I8: return int64_t(c.read<int8_t>(ctx));
    case GgufValueType::U16: return uint64_t(c.read<uint16_t>(ctx));
    case GgufValueType::I16: return int64_t(c.read<int16_t>(ctx));
    case GgufValueType::U32: return uint64_t(c.read<uint32_t>(ctx));
    case GgufValueType::I32: return int64_t(c.read<int32_t>(ctx));
    case GgufValueType::U64: return c.read<uint64_t>(ctx);
    case GgufValueType::I64: return c.read<int64_t>(ctx);
    case GgufValueType::F32: return double(c.read<float>(ctx));
    case GgufValueType::F64: return c.read<double>(ctx);
    case GgufValueType::BOOL: {
      const uint8_t b = c.read<uint8_t>(ctx);
      DSV3_CHECK(b <= 1, what, ": metadata '", key, "': bool value ", int(b), " is neither 0 nor 1");
      return b == 1;
    }
    case GgufValueType::STRING: return c.string(ctx);
    case GgufValueType::ARRAY: break;
  }
  fail(what, ": metadata '", key, "': unexpected value type");  // arrays are handled by the caller
}

GgufValue read_value(Cursor& c, const std::string& what, const std::string& key) {
  GgufValue v;
  const uint32_t t = c.read<uint32_t>("a metadata value type");
  DSV3_CHECK(known_value_type(t), what, ": metadata '", key, "': unknown value type ", t);
  v.type = GgufValueType(t);
  if (v.type != GgufValueType::ARRAY) {
    v.scalar = read_scalar(c, v.type, what, key);
    return v;
  }
  const uint32_t at = c.read<uint32_t>("an array element type");
  DSV3_CHECK(known_value_type(at), what, ": metadata '", key, "': unknown array element type ", at);
  v.array_type = GgufValueType(at);
  DSV3_CHECK(v.array_type != GgufValueType::ARRAY, what, ": metadata '", key, "': nested arrays are not supported");
  const uint64_t n = c.read<uint64_t>("an array length");
  // Every element takes at least min_value_bytes: a count the rest of the file cannot hold is
  // rejected before anything is allocated for it.
  DSV3_CHECK(n <= c.remaining() / min_value_bytes(v.array_type), what, ": metadata '", key, "': array of ", n,
             " elements does not fit in the file (file cut short?)");
  v.array.reserve(size_t(n));
  for (uint64_t i = 0; i < n; ++i) v.array.push_back(read_scalar(c, v.array_type, what, key));
  return v;
}

bool is_integer_type(GgufValueType t) {
  return t != GgufValueType::F32 && t != GgufValueType::F64 && t != GgufValueType::BOOL &&
         t != GgufValueType::STRING && t != GgufValueType::ARRAY;
}

std::optional<int64_t> as_int64(const GgufValue::Scalar& s) {
  if (const auto* u = std::get_if<uint64_t>(&s)) {
    if (*u > uint64_t(INT64_MAX)) return std::nullopt;
    return int64_t(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&s)) return *i;
  return std::nullopt;
}

}  // namespace

std::string_view gguf_value_type_name(GgufValueType t) {
  static constexpr std::array<std::string_view, 13> kNames{"u8",   "i8",  "u16",    "i16",   "u32", "i32", "f32",
                                                           "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) < kNames.size() ? kNames[uint32_t(t)] : "unknown";
}

std::optional<GgmlType> ggml_type(uint32_t id) {
  for (const GgmlType& t : kGgmlTypes)
    if (t.id == id) return t;
  return std::nullopt;
}

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  for (const GgmlType& t : kGgmlTypes)
    if (t.name == name) return t;
  return std::nullopt;
}

Shape GgufTensorInfo::torch_shape() const {
  Shape s;
  s.rank = ne.rank;
  for (int i = 0; i < ne.rank; ++i) s.dims[size_t(i)] = ne.dims[size_t(ne.rank - 1 - i)];
  return s;
}

// ---- metadata accessors ----

const GgufValue* GgufMetadata::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufValue& GgufMetadata::require(const std::string& key) const {
  const GgufValue* v = find(key);
  DSV3_CHECK(v, what_, ": missing metadata '", key, "'");
  return *v;
}

int64_t GgufMetadata::integer(const std::string& key, std::optional<int64_t> dflt) const {
  const GgufValue* v = find(key);
  if (!v) {
    DSV3_CHECK(dflt.has_value(), what_, ": missing metadata '", key, "'");
    return *dflt;
  }
  DSV3_CHECK(is_integer_type(v->type), what_, ": metadata '", key, "' must be an integer, found ",
             gguf_value_type_name(v->type));
  const auto i = as_int64(v->scalar);
  DSV3_CHECK(i.has_value(), what_, ": metadata '", key, "' is out of range");
  return *i;
}

double GgufMetadata::number(const std::string& key, std::optional<double> dflt) const {
  const GgufValue* v = find(key);
  if (!v) {
    DSV3_CHECK(dflt.has_value(), what_, ": missing metadata '", key, "'");
    return *dflt;
  }
  if (const auto* d = std::get_if<double>(&v->scalar); d && v->type != GgufValueType::ARRAY) return *d;
  DSV3_CHECK(is_integer_type(v->type), what_, ": metadata '", key, "' must be a number, found ",
             gguf_value_type_name(v->type));
  if (const auto* u = std::get_if<uint64_t>(&v->scalar)) return double(*u);
  return double(std::get<int64_t>(v->scalar));
}

bool GgufMetadata::boolean(const std::string& key, std::optional<bool> dflt) const {
  const GgufValue* v = find(key);
  if (!v) {
    DSV3_CHECK(dflt.has_value(), what_, ": missing metadata '", key, "'");
    return *dflt;
  }
  DSV3_CHECK(v->type == GgufValueType::BOOL, what_, ": metadata '", key, "' must be a bool, found ",
             gguf_value_type_name(v->type));
  return std::get<bool>(v->scalar);
}

std::string GgufMetadata::string(const std::string& key, std::optional<std::string> dflt) const {
  const GgufValue* v = find(key);
  if (!v) {
    DSV3_CHECK(dflt.has_value(), what_, ": missing metadata '", key, "'");
    return *dflt;
  }
  DSV3_CHECK(v->type == GgufValueType::STRING, what_, ": metadata '", key, "' must be a string, found ",
             gguf_value_type_name(v->type));
  return std::get<std::string>(v->scalar);
}

std::vector<std::string> GgufMetadata::strings(const std::string& key) const {
  const GgufValue& v = require(key);
  DSV3_CHECK(v.type == GgufValueType::ARRAY && v.array_type == GgufValueType::STRING, what_, ": metadata '", key,
             "' must be an array of strings");
  std::vector<std::string> out;
  out.reserve(v.array.size());
  for (const auto& s : v.array) out.push_back(std::get<std::string>(s));
  return out;
}

std::vector<int64_t> GgufMetadata::integers(const std::string& key) const {
  const GgufValue& v = require(key);
  DSV3_CHECK(v.type == GgufValueType::ARRAY && is_integer_type(v.array_type), what_, ": metadata '", key,
             "' must be an array of integers");
  std::vector<int64_t> out;
  out.reserve(v.array.size());
  for (const auto& s : v.array) {
    const auto i = as_int64(s);
    DSV3_CHECK(i.has_value(), what_, ": metadata '", key, "' has an element out of range");
    out.push_back(*i);
  }
  return out;
}

// ---- header ----

GgufHeader parse_gguf_header(std::span<const uint8_t> bytes, const std::string& what) {
  Cursor c(bytes, what);
  DSV3_CHECK(bytes.size() >= 4, what, ": not a GGUF file (", bytes.size(), " bytes, too short for the magic)");
  const uint32_t magic = c.read<uint32_t>("the magic");
  DSV3_CHECK(magic == kMagic, what, ": not a GGUF file (the first 4 bytes are not 'GGUF')");
  GgufHeader h;
  h.version = c.read<uint32_t>("the version");
  DSV3_CHECK((h.version & 0xffff) != 0 || h.version == 0, what,
             ": big-endian GGUF files are not supported (version field reads ", h.version, ")");
  DSV3_CHECK(h.version == 2 || h.version == 3, what, ": GGUF version ", h.version,
             " is not supported (2 or 3; version 1 files predate August 2023, re-convert them)");
  const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
  const uint64_t n_kv = c.read<uint64_t>("the metadata count");
  // A key takes at least 12 bytes (length, type), a tensor description at least 24.
  DSV3_CHECK(n_kv <= c.remaining() / 12, what, ": metadata count ", n_kv, " cannot fit in the file");
  DSV3_CHECK(n_tensors <= c.remaining() / 24, what, ": tensor count ", n_tensors, " cannot fit in the file");

  std::map<std::string, GgufValue> kv;
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.string("a metadata key");
    DSV3_CHECK(!key.empty(), what, ": metadata entry ", i, " has an empty key");
    GgufValue v = read_value(c, what, key);
    DSV3_CHECK(!kv.count(key), what, ": metadata '", key, "' appears twice");
    kv.emplace(std::move(key), std::move(v));
  }
  h.metadata = GgufMetadata(what, std::move(kv));
  if (h.metadata.has("general.alignment")) {
    const int64_t a = h.metadata.integer("general.alignment");
    DSV3_CHECK(a > 0 && a <= (1 << 30) && (a & (a - 1)) == 0, what, ": general.alignment ", a,
               " is not a power of two");
    h.alignment = uint64_t(a);
  }

  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.string("a tensor name");
    auto bad = [&](auto... parts) { fail(what, ": tensor '", t.name, "': ", parts...); };
    if (t.name.empty()) fail(what, ": tensor ", i, " has an empty name");
    if (!names.insert(t.name).second) bad("appears twice");
    const uint32_t n_dims = c.read<uint32_t>("a tensor's dimension count");
    if (n_dims == 0 || n_dims > uint32_t(kMaxDims)) bad(n_dims, " dimensions (ggml tensors have 1 to 4)");
    // The product of the non-zero dims bounds every partial product, so neither this count nor
    // Shape::numel() can overflow, whatever the order of the dims or a zero among them.
    uint64_t numel = 1, nonzero = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = c.read<uint64_t>("a tensor dimension");
      if (dim > kMaxDim) bad("dimension ", dim, " is implausibly large");
      if (dim > 0 && nonzero > kMaxElements / dim) bad("element count overflows");
      if (dim > 0) nonzero *= dim;
      numel *= dim;
      t.ne.dims[size_t(t.ne.rank++)] = int64_t(dim);
    }
    const uint32_t type = c.read<uint32_t>("a tensor type");
    const auto gt = ggml_type(type);
    if (!gt) bad("unknown ggml type ", type);
    t.type = *gt;
    t.offset = c.read<uint64_t>("a tensor offset");
    if (t.ne[0] % t.type.block != 0)
      bad("rows of ", t.ne[0], " elements are not a whole number of ", t.type.name, " blocks (", t.type.block, ")");
    t.nbytes = numel / uint64_t(t.type.block) * uint64_t(t.type.block_bytes);
    h.tensors.push_back(std::move(t));
  }
  const uint64_t end = c.pos();
  h.data_offset = (end + h.alignment - 1) / h.alignment * h.alignment;
  DSV3_CHECK(h.data_offset <= bytes.size() || h.tensors.empty(), what, ": data section starts at byte ", h.data_offset, ", beyond the end of the file (", bytes.size(),
             " bytes; file cut short?)");
  const uint64_t data_size = bytes.size() > h.data_offset ? bytes.size() - h.data_offset : 0;
  for (const GgufTensorInfo& t : h.tensors) {
    DSV3_CHECK(t.offset % h.alignment == 0, what, ": tensor '", t.name, "': offset ", t.offset,
               " is not a multiple of the alignment ", h.alignment);
    DSV3_CHECK(t.offset <= data_size && t.nbytes <= data_size - t.offset, what, ": tensor '", t.name, "': ",
               t.type.name, " ", t.torch_shape().str(), " needs bytes [", t.offset, ", ", t.offset + t.nbytes,
               ") of the data section, which has ", data_size, " (file cut short?)");
  }
  std::vector<const GgufTensorInfo*> sorted;
  for (const auto& t : h.tensors)
    if (t.nbytes > 0) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i)
    DSV3_CHECK(sorted[i]->offset >= sorted[i - 1]->offset + sorted[i - 1]->nbytes, what, ": tensors '",
               sorted[i - 1]->name, "' and '", sorted[i]->name, "' overlap");
  return h;
}

GgufFile::GgufFile(const std::string& path, const LoadOptions& opt) : file_(path, opt) {
  header_ = parse_gguf_header(file_.bytes(), path);
}

// ---- split sets ----

namespace {

namespace fs = std::filesystem;

// llama.cpp's llama_split_path: PREFIX-%05d-of-%05d.gguf, numbered from 1.
std::string split_path(const std::string& prefix, int64_t no, int64_t count) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%05d-of-%05d.gguf", int(no), int(count));
  return prefix + buf;
}

}  // namespace

bool GgufModel::is_gguf_path(const std::string& path) {
  std::error_code ec;
  return fs::path(path).extension() == ".gguf" && fs::is_regular_file(path, ec);
}

GgufModel GgufModel::open(const std::string& path, const LoadOptions& opt) {
  GgufModel m;
  m.path_ = path;
  static const std::regex kSplit(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");
  std::smatch match;
  std::vector<std::string> paths{path};
  int64_t count = 1;
  std::string prefix;
  if (std::regex_match(path, match, kSplit)) {
    prefix = match[1].str();
    count = std::stoll(match[3].str());
    DSV3_CHECK(count >= 1, path, ": split set of 0 files");
    paths.clear();
    for (int64_t k = 1; k <= count; ++k) paths.push_back(split_path(prefix, k, count));
  }
  for (const std::string& p : paths) {
    DSV3_CHECK(fs::exists(p), p, ": missing (part of the split set ", path, ")");
    m.files_.push_back(std::make_unique<GgufFile>(p, opt));
  }
  int64_t total = 0;
  for (size_t k = 0; k < m.files_.size(); ++k) {
    const GgufFile& f = *m.files_[k];
    const GgufMetadata& md = f.metadata();
    if (md.has("split.count") || count > 1) {
      const int64_t no = md.integer("split.no"), n = md.integer("split.count");
      DSV3_CHECK(n == count, f.path(), ": split.count is ", n, " but the set has ", count, " files");
      DSV3_CHECK(no == int64_t(k), f.path(), ": split.no is ", no, ", expected ", k, " for this file name");
    }
    for (const GgufTensorInfo& t : f.header().tensors) {
      auto [it, inserted] = m.tensors_.emplace(t.name, Location{&f, &t});
      DSV3_CHECK(inserted, f.path(), ": tensor '", t.name, "' is also in ", it->second.file->path());
    }
    total += int64_t(f.header().tensors.size());
  }
  const GgufMetadata& first = m.files_.front()->metadata();
  if (first.has("split.tensors.count"))
    DSV3_CHECK(first.integer("split.tensors.count") == total, path, ": split.tensors.count is ",
               first.integer("split.tensors.count"), " but the files hold ", total, " tensors (a file missing?)");
  return m;
}

const GgufModel::Location& GgufModel::get(const std::string& name) const {
  auto it = tensors_.find(name);
  DSV3_CHECK(it != tensors_.end(), path_, ": missing tensor '", name, "'");
  return it->second;
}

uint64_t GgufModel::file_bytes() const {
  uint64_t n = 0;
  for (const auto& f : files_) n += f->bytes().size();
  return n;
}

void GgufModel::populate() const {
  for (const auto& f : files_) f->populate();
}

std::optional<Residency> GgufModel::residency() const {
  std::vector<std::span<const uint8_t>> ranges;
  for (const auto& f : files_) ranges.push_back(f->bytes());
  return dsv3::residency(ranges);
}

}  // namespace dsv3
