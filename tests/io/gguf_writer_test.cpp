// The GGUF writer (byte layout, alignment, atomic output) and the tokenizer metadata, checked
// byte for byte against what llama.cpp's converter wrote for models/dsv3-kjv (testdata/gguf/kjv-BF16.llamacpp-header.gguf: the header of
// ../shared/gguf/kjv/kjv-BF16.gguf, up to its data section).
#include <gtest/gtest.h>

#include <cstring>

#include "io/gguf_tokenizer.h"
#include "io/gguf_writer.h"
#include "tests/io/gguf_read_back.h"
#include "tests/io/io_test_util.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using testing::Cursor;
using testing::error_of;
using testing::kv_section;
using testing::read_bytes;
using testing::says;
using testing::TempDir;

const fs::path kKjv = fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv";
const std::string kLlamaHeader = std::string(DSV3_TESTDATA_DIR) + "/gguf/kjv-BF16.llamacpp-header.gguf";

TEST(GgufWriter, LayoutAlignmentAndMetadataEncoding) {
  TempDir dir("gguf");
  GgufWriter w;
  w.set_u32("a.u32", 7);
  w.set_string("a.s", "hi");
  w.set_bool("a.b", true);
  w.set_f32("a.f", 0.5f);
  w.set_strings("a.ss", {"x", "yz"});
  w.set_i32s("a.is", {-1, 2});
  EXPECT_TRUE(says(error_of([&] { w.set_u32("a.u32", 1); }), {"a.u32", "twice"}));
  w.add_tensor("t0", 0, Shape{2, 3}, 24);  // F32 [2, 3]: ne = {3, 2}
  w.add_tensor("t1", 30, Shape{5}, 10);    // BF16 [5]
  const std::string path = dir.file("x.gguf");
  w.write(path, [&](size_t i, const GgufWriter::Sink& sink) {
    std::vector<uint8_t> bytes(w.tensor_bytes(i), uint8_t(0xa0 + i));
    sink({bytes.data(), 4});  // in two pieces
    sink({bytes.data() + 4, bytes.size() - 4});
  });
  const std::string b = read_bytes(path);
  const auto kv = kv_section(b);
  ASSERT_EQ(kv.size(), 6u);
  EXPECT_EQ(kv[0].first, "a.u32");
  EXPECT_EQ(kv[0].second, std::string("\x04\0\0\0\x07\0\0\0", 8));
  EXPECT_EQ(kv[2].second, std::string("\x07\0\0\0\x01", 5));
  Cursor c{b};
  c.p = 8;
  EXPECT_EQ(c.get<uint64_t>(), 2u);  // tensors
  c.get<uint64_t>();
  for (const auto& [k, v] : kv) c.p += 8 + k.size() + v.size();
  EXPECT_EQ(c.str(), "t0");
  EXPECT_EQ(c.get<uint32_t>(), 2u);
  EXPECT_EQ(c.get<uint64_t>(), 3u);  // ne0: the last PyTorch dimension
  EXPECT_EQ(c.get<uint64_t>(), 2u);
  EXPECT_EQ(c.get<uint32_t>(), 0u);
  EXPECT_EQ(c.get<uint64_t>(), 0u);
  EXPECT_EQ(c.str(), "t1");
  c.p += 4 + 8 + 4;
  EXPECT_EQ(c.get<uint64_t>(), 32u);  // t0's 24 bytes padded to the alignment
  const size_t data = (c.p + 31) / 32 * 32;
  ASSERT_EQ(b.size(), data + 64);
  EXPECT_EQ(b[data], char(0xa0));
  EXPECT_EQ(b[data + 24], 0);  // padding
  EXPECT_EQ(b[data + 32], char(0xa1));
}

TEST(GgufWriter, FailedWriteLeavesNothing) {
  TempDir dir("gguf");
  GgufWriter w;
  w.add_tensor("t", 0, Shape{4}, 16);
  const std::string path = dir.file("x.gguf");
  const std::string short_msg = error_of([&] {
    w.write(path, [](size_t, const GgufWriter::Sink& sink) { sink(std::vector<uint8_t>(8)); });
  });
  EXPECT_TRUE(says(short_msg, {"x.gguf", "'t'", "8 of its 16 bytes"}));
  EXPECT_TRUE(error_of([&] { w.write(path, [](size_t, const GgufWriter::Sink&) { fail("interrupted"); }); }) ==
              "interrupted");
  EXPECT_TRUE(fs::is_empty(dir.path()));  // neither the file nor a temporary one
  EXPECT_TRUE(says(error_of([&] { w.add_tensor("t", 0, Shape{1}, 4); }), {"'t'", "twice"}));
  EXPECT_TRUE(says(error_of([&] { w.add_tensor(std::string(64, 'n'), 0, Shape{1}, 4); }), {"longer than 63"}));
}

// The tokenizer written for models/dsv3-kjv is what llama.cpp's convert_hf_to_gguf.py wrote for
// it: the same tokenizer.* keys in the same order, byte for byte.
TEST(GgufTokenizer, KjvEqualsLlamaCppConverter) {
  GgufWriter w;
  add_tokenizer_metadata(w, kKjv.string(), 2048);
  TempDir dir("gguf");
  w.write(dir.file("m.gguf"), [](size_t, const GgufWriter::Sink&) {});
  const auto ours = kv_section(read_bytes(dir.file("m.gguf")));
  auto theirs = kv_section(read_bytes(kLlamaHeader));
  std::erase_if(theirs, [](const auto& kv) { return kv.first.rfind("tokenizer.", 0) != 0; });
  ASSERT_EQ(ours.size(), theirs.size());
  ASSERT_EQ(ours.size(), 11u);
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(ours[i].first, theirs[i].first) << "key " << i;
    EXPECT_TRUE(ours[i].second == theirs[i].second) << "value of " << theirs[i].first << " differs";
  }
}

TEST(GgufTokenizer, BadTokenizerSaysWhat) {
  TempDir dir("gguf");
  GgufWriter w;
  EXPECT_TRUE(says(error_of([&] { add_tokenizer_metadata(w, dir.path().string(), 10); }), {"no tokenizer.json"}));
  testing::write_bytes(dir.file("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 12}, \"merges\": []}}");
  EXPECT_TRUE(says(error_of([&] { add_tokenizer_metadata(w, dir.path().string(), 10); }), {"'a'", "id 12", "10"}));
  testing::write_bytes(dir.file("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1}, \"merges\": []}}");
  EXPECT_TRUE(says(error_of([&] { add_tokenizer_metadata(w, dir.path().string(), 10); }), {"pre-tokenizer", "--tokenizer-pre"}));
  add_tokenizer_metadata(w, dir.path().string(), 10, "deepseek-v3");
  EXPECT_TRUE(w.has("tokenizer.ggml.tokens"));
  testing::write_bytes(dir.file("tokenizer.json"), "{\"model\": ");
  GgufWriter w2;
  EXPECT_TRUE(says(error_of([&] { add_tokenizer_metadata(w2, dir.path().string(), 10); }), {"malformed JSON"}));
}

}  // namespace
}  // namespace dsv3
