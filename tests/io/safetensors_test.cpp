// safetensors reading: every malformed header is rejected with one line naming the file, the
// tensor and the fault (never a crash or a read outside the mapping); SafetensorsWriter output
// reads back bit-exact for every dtype.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>

#include "io/safetensors_writer.h"
#include "io_test_util.h"

namespace dsv3 {
namespace {

using testing::error_of;
using testing::safetensors_bytes;
using testing::says;
using testing::TempDir;
using testing::tensor_json;
using testing::write_bytes;
using json = nlohmann::json;

class SafetensorsBadInput : public ::testing::Test {
 protected:
  // Writes `bytes` as bad.safetensors and returns the message of opening it.
  std::string open_error(const std::string& bytes) {
    write_bytes(path_, bytes);
    return error_of([&] { SafetensorsFile f(path_); });
  }
  std::string open_error(const json& header, size_t data_bytes) {
    return open_error(safetensors_bytes(header.dump(), data_bytes));
  }
  TempDir dir_;
  std::string path_ = dir_.file("bad.safetensors");
};

TEST_F(SafetensorsBadInput, EmptyFile) {
  EXPECT_TRUE(says(open_error(""), {path_, "truncated", "0 bytes"}));
}

TEST_F(SafetensorsBadInput, ShorterThanTheLengthField) {
  EXPECT_TRUE(says(open_error(std::string("\x10\0\0\0\0", 5)), {path_, "truncated", "5 bytes"}));
}

TEST_F(SafetensorsBadInput, DataSectionCutShort) {
  // A valid file whose last 6 bytes were lost: the tensor's range now ends past the data.
  const json h = {{"a", tensor_json("F32", {2}, 0, 8)}, {"b", tensor_json("F32", {4}, 8, 24)}};
  std::string bytes = safetensors_bytes(h.dump(), 24);
  bytes.resize(bytes.size() - 6);
  EXPECT_TRUE(says(open_error(bytes), {path_, "tensor 'b'", "beyond the data section", "truncated"}));
}

TEST_F(SafetensorsBadInput, HeaderCutShort) {
  // Truncated inside the JSON header: the length field now points past the end.
  std::string bytes = safetensors_bytes(json{{"a", tensor_json("F32", {2}, 0, 8)}}.dump(), 8);
  bytes.resize(20);
  EXPECT_TRUE(says(open_error(bytes), {path_, "header length", "beyond the end of the file"}));
}

TEST_F(SafetensorsBadInput, HeaderLengthBeyondFile) {
  const std::string bytes = safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4, 4096);
  EXPECT_TRUE(says(open_error(bytes), {path_, "header length 4096", "beyond the end of the file"}));
}

TEST_F(SafetensorsBadInput, HeaderLengthImplausiblyLarge) {
  EXPECT_TRUE(says(open_error(safetensors_bytes("{}", 0, uint64_t(1) << 62)), {path_, "header length"}));
  // The largest length: no wrap-around in "8 + length".
  EXPECT_TRUE(says(open_error(safetensors_bytes("{}", 0, ~uint64_t(0))), {path_, "header length"}));
}

TEST_F(SafetensorsBadInput, MalformedJson) {
  EXPECT_TRUE(says(open_error(safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [1], )", 0)),
                   {path_, "malformed JSON header"}));
}

TEST_F(SafetensorsBadInput, HeaderNotAnObject) {
  EXPECT_TRUE(says(open_error(safetensors_bytes("[1, 2, 3]", 0)), {path_, "not an object"}));
  EXPECT_TRUE(says(open_error(safetensors_bytes("\"F32\"", 0)), {path_, "not an object"}));
}

TEST_F(SafetensorsBadInput, EntryNotAnObject) {
  EXPECT_TRUE(says(open_error(json{{"a", 5}}, 0), {path_, "tensor 'a'", "not an object"}));
}

TEST_F(SafetensorsBadInput, MissingFields) {
  EXPECT_TRUE(says(open_error(json{{"a", {{"shape", {1}}, {"data_offsets", {0, 4}}}}}, 4),
                   {path_, "tensor 'a'", "dtype"}));
  EXPECT_TRUE(says(open_error(json{{"a", {{"dtype", "F32"}, {"data_offsets", {0, 4}}}}}, 4),
                   {path_, "tensor 'a'", "shape"}));
  EXPECT_TRUE(says(open_error(json{{"a", {{"dtype", "F32"}, {"shape", {1}}}}}, 4),
                   {path_, "tensor 'a'", "data_offsets"}));
  EXPECT_TRUE(says(open_error(json{{"a", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4, 8}}}}}, 8),
                   {path_, "tensor 'a'", "data_offsets"}));
}

TEST_F(SafetensorsBadInput, UnknownDtype) {
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F7", {4}, 0, 4)}}, 4), {path_, "tensor 'w'", "unknown dtype 'F7'"}));
  EXPECT_TRUE(says(open_error(json{{"w", {{"dtype", 4}, {"shape", {1}}, {"data_offsets", {0, 4}}}}}, 4),
                   {path_, "tensor 'w'", "dtype"}));
}

TEST_F(SafetensorsBadInput, BadDimensions) {
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {-1}, 0, 4)}}, 4), {path_, "tensor 'w'", "negative"}));
  json h = {{"w", {{"dtype", "F32"}, {"shape", {1.5}}, {"data_offsets", {0, 4}}}}};
  EXPECT_TRUE(says(open_error(h, 4), {path_, "tensor 'w'", "non-integer"}));
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {1, 1, 1, 1, 1}, 0, 4)}}, 4), {path_, "tensor 'w'", "rank 5"}));
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {int64_t(1) << 41}, 0, 4)}}, 4),
                   {path_, "tensor 'w'", "implausibly large"}));
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {int64_t(1) << 40, int64_t(1) << 20}, 0, 0)}}, 0),
                   {path_, "tensor 'w'", "overflows"}));
}

// DISABLED until src/io/safetensors.cpp checks the element count before multiplying (see the
// report of the fuzzing work): [2^40, 2^40] wraps the uint64 count to 0, so a 0-byte range is
// accepted and Shape::numel() later overflows int64 (UB).
TEST_F(SafetensorsBadInput, ElementCountThatWrapsToZero) {
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {int64_t(1) << 40, int64_t(1) << 40}, 0, 0)}}, 0),
                   {path_, "tensor 'w'"}));
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("U8", {int64_t(1) << 32, int64_t(1) << 32, 0}, 0, 0)}}, 0),
                   {path_, "tensor 'w'"}));
}

TEST_F(SafetensorsBadInput, ShapeTimesDtypeDoesNotMatchByteRange) {
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {3}, 0, 8)}}, 8),
                   {path_, "tensor 'w'", "[3]", "F32", "needs 12 bytes", "give 8"}));
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("BF16", {2, 2}, 0, 16)}}, 16),
                   {path_, "tensor 'w'", "needs 8 bytes", "give 16"}));
}

TEST_F(SafetensorsBadInput, OverlappingOffsets) {
  const json h = {{"a", tensor_json("F32", {2}, 0, 8)}, {"b", tensor_json("F32", {2}, 4, 12)}};
  EXPECT_TRUE(says(open_error(h, 12), {path_, "'a'", "'b'", "overlapping"}));
  // One tensor's range inside another's.
  const json inside = {{"big", tensor_json("F32", {4}, 0, 16)}, {"small", tensor_json("U8", {2}, 4, 6)}};
  EXPECT_TRUE(says(open_error(inside, 16), {path_, "'big'", "'small'", "overlapping"}));
}

TEST_F(SafetensorsBadInput, OutOfRangeOffsets) {
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {4}, 0, 16)}}, 8), {path_, "tensor 'w'", "beyond the data section"}));
  // Far past the end, with a size that matches the shape: must not be read.
  const uint64_t far = uint64_t(1) << 40;
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {4}, far, far + 16)}}, 8),
                   {path_, "tensor 'w'", "beyond the data section"}));
  const json negative = {{"w", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {-16, 0}}}}};
  EXPECT_TRUE(says(open_error(negative, 8), {path_, "tensor 'w'", "data_offsets"}));
}

TEST_F(SafetensorsBadInput, ReversedOffsets) {
  EXPECT_TRUE(says(open_error(json{{"w", tensor_json("F32", {1}, 8, 4)}}, 8), {path_, "tensor 'w'", "reversed"}));
}

TEST_F(SafetensorsBadInput, MetadataNotStrings) {
  EXPECT_TRUE(says(open_error(json{{"__metadata__", {{"format", 1}}}}, 0), {path_, "__metadata__", "format"}));
  EXPECT_TRUE(says(open_error(json{{"__metadata__", 1}}, 0), {path_, "__metadata__"}));
}

TEST(SafetensorsHeader, ParsesFromBytesAndNamesTheSource) {
  const std::string bytes = safetensors_bytes(json{{"w", tensor_json("F32", {3}, 0, 8)}}.dump(), 8);
  const auto span = std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_TRUE(says(error_of([&] { parse_safetensors_header(span, "shard-7.safetensors"); }),
                   {"shard-7.safetensors", "tensor 'w'"}));
  const std::string header = json{{"w", tensor_json("F32", {2}, 0, 8)}}.dump();
  const std::string ok = safetensors_bytes(header, 8);
  const auto h = parse_safetensors_header(std::span(reinterpret_cast<const uint8_t*>(ok.data()), ok.size()), "x");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.data_offset, 8 + header.size());
}

TEST(SafetensorsFile, MissingFileIsAnError) {
  TempDir dir;
  const std::string path = dir.file("nope.safetensors");
  EXPECT_TRUE(says(error_of([&] { SafetensorsFile f(path); }), {path, "cannot open"}));
  EXPECT_TRUE(says(error_of([&] { SafetensorsFile f(dir.path().string()); }), {dir.path().string()}));
}

// Bytes of tensor i: a pattern that differs between tensors and positions.
uint8_t pattern(size_t tensor, size_t byte) { return uint8_t(tensor * 37 + byte * 11 + (byte >> 8)); }

TEST(SafetensorsRoundTrip, EveryDtypeReadsBackExactly) {
  const DType all[] = {DType::F32, DType::F16,  DType::BF16, DType::F8_E4M3, DType::F64, DType::I64,
                       DType::I32, DType::I16, DType::I8,   DType::U8,      DType::BOOL};
  SafetensorsWriter w;
  std::vector<Shape> shapes;
  for (DType d : all) {
    // Odd sizes, so that the writer's alignment of wider types is exercised.
    shapes.push_back(Shape{3, 5});
    w.add("t." + std::string(dtype_name(d)), d, shapes.back());
  }
  w.add("scalar", DType::F32, Shape{});
  w.add("empty", DType::BF16, Shape{0, 7});
  w.add("rank4", DType::F16, Shape{2, 1, 3, 2});
  TempDir dir;
  const std::string path = dir.file("all.safetensors");
  w.write(path, [&](size_t i, std::span<uint8_t> dst) {
    for (size_t b = 0; b < dst.size(); ++b) dst[b] = pattern(i, b);
  }, {{"format", "pt"}, {"note", "round trip"}});

  SafetensorsFile f(path);
  EXPECT_EQ(f.header().metadata.at("format"), "pt");
  EXPECT_EQ(f.header().metadata.at("note"), "round trip");
  ASSERT_EQ(f.entries().size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const auto it = std::find_if(f.entries().begin(), f.entries().end(),
                                 [&](const SafetensorsEntry& e) { return e.name == w.name(i); });
    ASSERT_NE(it, f.entries().end()) << w.name(i);
    const TensorView v = f.view(*it);
    if (i < std::size(all)) {
      EXPECT_EQ(v.dtype, all[i]) << w.name(i);
      EXPECT_EQ(v.shape, shapes[i]) << w.name(i);
    }
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % dtype_size(v.dtype), 0u) << w.name(i) << " is misaligned";
    const auto* p = static_cast<const uint8_t*>(v.data);
    for (size_t b = 0; b < v.nbytes(); ++b) ASSERT_EQ(p[b], pattern(i, b)) << w.name(i) << " byte " << b;
  }
  const auto& names = f.entries();
  auto find = [&](const std::string& n) {
    return *std::find_if(names.begin(), names.end(), [&](auto& e) { return e.name == n; });
  };
  EXPECT_EQ(find("scalar").shape.rank, 0);
  EXPECT_EQ(f.view(find("scalar")).nbytes(), 4u);
  EXPECT_EQ(f.view(find("empty")).nbytes(), 0u);
  EXPECT_EQ(find("rank4").shape, (Shape{2, 1, 3, 2}));
}

TEST(SafetensorsRoundTrip, ViewsPointIntoTheMappingWithoutCopies) {
  SafetensorsWriter w;
  w.add("a", DType::F32, Shape{64});
  w.add("b", DType::BF16, Shape{8, 8});
  TempDir dir;
  const std::string path = dir.file("v.safetensors");
  w.write(path, [](size_t i, std::span<uint8_t> dst) { std::memset(dst.data(), int(i + 1), dst.size()); });
  SafetensorsFile f(path);
  const MappedFile raw(path);
  for (const auto& e : f.entries()) {
    const TensorView v = f.view(e);
    // Same offsets as in a second, independent mapping of the file: the view is the file.
    const size_t off = size_t(f.header().data_offset + e.begin);
    EXPECT_LE(off + v.nbytes(), raw.size());
    EXPECT_EQ(std::memcmp(v.data, raw.data() + off, v.nbytes()), 0);
  }
}

TEST(SafetensorsRoundTrip, WriterErrorLeavesNoFile) {
  SafetensorsWriter w;
  w.add("a", DType::F32, Shape{4});
  w.add("b", DType::F32, Shape{4});
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  EXPECT_THROW(w.write(path, [](size_t i, std::span<uint8_t>) {
    if (i == 1) throw Error("fill failed");
  }), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace dsv3
