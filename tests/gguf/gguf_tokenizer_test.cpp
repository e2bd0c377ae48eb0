// A GGUF file alone is a model: the tokenizer and chat template built from its metadata
// (tokenizer.ggml.*, tokenizer.chat_template) tokenize and render exactly as the Hugging Face
// files they came from: the kjv GGUF against models/dsv3-kjv's tokenizer.json, and DeepSeek-V3's
// own vocabulary, written into a GGUF as llama.cpp's converter writes it, against the HF cases.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/gguf_tokenizer.h"
#include "tests/io/gguf_builder.h"
#include "tests/io/io_test_util.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTestdata = DSV3_TESTDATA_DIR;

std::vector<json> read_jsonl(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in) << p;
  std::vector<json> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// Every text of the tokenizer conformance cases, plus the chat renderings.
std::vector<std::string> texts() {
  std::vector<std::string> t;
  for (const auto& c : read_jsonl(kTestdata / "tokenizer/cases.jsonl")) t.push_back(c["text"]);
  for (const auto& c : read_jsonl(kTestdata / "tokenizer/chat.jsonl")) t.push_back(c["rendered"]);
  return t;
}

TEST(GgufTokenizer, KjvMatchesItsTokenizerJson) {
  const GgufModel g = GgufModel::open((kTestdata / "gguf/kjv/kjv-BF16.gguf").string());
  const Tokenizer got = tokenizer_from_gguf(g.metadata());
  const Tokenizer want = Tokenizer::from_dir(kTestdata / "../models/dsv3-kjv");
  EXPECT_EQ(got.vocab_size(), want.vocab_size());
  EXPECT_EQ(got.bos_id(), want.bos_id());
  EXPECT_EQ(got.eos_id(), want.eos_id());
  EXPECT_EQ(got.add_bos_token(), want.add_bos_token());
  EXPECT_EQ(got.add_eos_token(), want.add_eos_token());
  for (int32_t id = 0; id < want.vocab_size(); ++id) {
    ASSERT_EQ(got.id_to_token(id), want.id_to_token(id)) << id;
    ASSERT_EQ(got.is_special(id), want.is_special(id)) << id;
  }
  for (const std::string& text : texts()) {
    SCOPED_TRACE(text.substr(0, 100));
    const auto ids = want.encode(text, true);
    EXPECT_EQ(got.encode(text, true), ids);
    EXPECT_EQ(got.decode(ids), want.decode(ids));
    EXPECT_EQ(got.decode(ids, true), want.decode(ids, true));
  }
}

TEST(GgufTokenizer, KjvChatTemplateRendersAsTokenizerConfig) {
  const GgufModel g = GgufModel::open((kTestdata / "gguf/kjv/kjv-BF16.gguf").string());
  const ChatTemplate got = chat_template_from_gguf(g.metadata());
  const ChatTemplate want = ChatTemplate::from_tokenizer_config(kTestdata / "../models/dsv3-kjv/tokenizer_config.json");
  EXPECT_EQ(got.name(), want.name());
  for (const auto& c : read_jsonl(kTestdata / "tokenizer/chat.jsonl")) {
    const auto messages = chat_messages_from_json(c["messages"]);
    const bool gen = c["add_generation_prompt"];
    EXPECT_EQ(got.render(messages, gen), want.render(messages, gen));
  }
}

// DeepSeek-V3's tokenizer.json as llama.cpp's convert_hf_to_gguf.py writes it (get_vocab_base):
// ids up to the model's 129280 rows, absent ones as [PADi] of type unused; added tokens control
// when special or when they look special ("<｜...｜>", does_token_look_special, so also the
// non-special chat markers), else user defined; merges as "a b".
std::string v3_vocab_gguf(const fs::path& dir) {
  std::ifstream in(dir / "tokenizer.json");
  const json t = json::parse(in);
  constexpr int32_t kRows = 129280;
  std::vector<std::string> tokens(kRows);
  std::vector<int32_t> types(kRows, 5);
  for (int32_t i = 0; i < kRows; ++i) tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";
  for (const auto& [tok, id] : t["model"]["vocab"].items()) {
    tokens[id.get<size_t>()] = tok;
    types[id.get<size_t>()] = 1;
  }
  for (const auto& a : t["added_tokens"]) {
    tokens[a["id"].get<size_t>()] = a["content"];
    const std::string c = a["content"];
    const bool looks_special = (c.starts_with("<｜") && c.ends_with("｜>")) || (c.starts_with("<|") && c.ends_with("|>"));
    types[a["id"].get<size_t>()] = a["special"].get<bool>() || looks_special ? 3 : 4;
  }
  std::vector<std::string> merges;
  for (const auto& m : t["model"]["merges"])
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  testing::GgufBuilder b;
  b.string("tokenizer.ggml.model", "gpt2").string("tokenizer.ggml.pre", "deepseek-v3");
  b.strings("tokenizer.ggml.tokens", tokens).i32s("tokenizer.ggml.token_type", types);
  b.strings("tokenizer.ggml.merges", merges);
  b.u32("tokenizer.ggml.bos_token_id", 0).u32("tokenizer.ggml.eos_token_id", 1);
  b.boolean("tokenizer.ggml.add_bos_token", true).boolean("tokenizer.ggml.add_eos_token", false);
  return b.bytes();
}

TEST(GgufTokenizer, DeepSeekV3VocabularyMatchesHuggingFace) {
  const fs::path dir = DSV3_TOKENIZER_DIR;
  ASSERT_TRUE(fs::exists(dir / "tokenizer.json")) << dir << ": run scripts/setup (fetches the V3 tokenizer)";
  testing::TempDir tmp("gguf-tok");
  const std::string path = tmp.file("v3-vocab.gguf");
  testing::write_bytes(path, v3_vocab_gguf(dir));
  const Tokenizer tok = tokenizer_from_gguf(GgufModel::open(path).metadata());
  EXPECT_EQ(tok.vocab_size(), 129280);  // the file's list, [PADi] placeholders unknown
  EXPECT_EQ(tok.id_to_token(129000), std::nullopt);
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.is_special(128803));  // <｜User｜>: added, not special, though written as control
  EXPECT_FALSE(tok.is_special(128806));  // <｜tool▁calls▁begin｜>
  EXPECT_TRUE(tok.is_special(128805));   // <|EOT|>
  for (const auto& c : read_jsonl(kTestdata / "tokenizer/cases.jsonl")) {
    const std::string text = c["text"];
    SCOPED_TRACE(text.substr(0, 100));
    EXPECT_EQ(tok.encode(text), c["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.encode(text, true), c["ids_with_special"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.decode(c["ids"].get<std::vector<int32_t>>()), c["decoded"].get<std::string>());
  }
  for (const auto& c : read_jsonl(kTestdata / "tokenizer/chat.jsonl"))
    EXPECT_EQ(tok.encode(c["rendered"].get<std::string>()), c["ids"].get<std::vector<int32_t>>());
}

TEST(GgufTokenizer, BadVocabulariesFailWithOneLine) {
  testing::TempDir tmp("gguf-tok-bad");
  const std::string path = tmp.file("bad.gguf");
  auto error = [&](const testing::GgufBuilder& b) {
    testing::write_bytes(path, b.bytes());
    return testing::error_of([&] { tokenizer_from_gguf(GgufModel::open(path).metadata()); });
  };
  auto base = [] {
    testing::GgufBuilder b;
    b.string("tokenizer.ggml.model", "gpt2").string("tokenizer.ggml.pre", "deepseek-v3");
    b.strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
    return b;
  };
  testing::GgufBuilder spm;
  spm.string("tokenizer.ggml.model", "llama");
  EXPECT_TRUE(testing::says(error(spm), {path, "'llama' is not supported"}));
  EXPECT_TRUE(testing::says(error(base().strings("tokenizer.ggml.merges", {"ab"})), {path, "malformed merge"}));
  EXPECT_TRUE(testing::says(error(base().strings("tokenizer.ggml.merges", {"a c"})), {path, "not in the vocabulary"}));
  testing::GgufBuilder pre;
  pre.string("tokenizer.ggml.model", "gpt2").string("tokenizer.ggml.pre", "qwen2");
  pre.strings("tokenizer.ggml.tokens", {"a"}).strings("tokenizer.ggml.merges", {});
  EXPECT_TRUE(testing::says(error(pre), {path, "pre-tokenizer 'qwen2' is not supported"}));
  EXPECT_TRUE(testing::says(error(base().strings("tokenizer.ggml.merges", {}).u32("tokenizer.ggml.bos_token_id", 9)),
                            {path, "BOS/EOS id 9"}));
  EXPECT_TRUE(testing::says(error(base().strings("tokenizer.ggml.merges", {}).i32s("tokenizer.ggml.token_type", {1})),
                            {path, "token_type has 1 entries for 3 tokens"}));
}

}  // namespace
}  // namespace dsv3
