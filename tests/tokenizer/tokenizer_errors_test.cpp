// Bad tokenizer files give one dsv3::Error that names the file, never a crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

fs::path write_temp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

// Runs `f`, expecting a dsv3::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected dsv3::Error";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, MissingFile) {
  const fs::path p = fs::temp_directory_path() / "dsv3_no_such_dir" / "tokenizer.json";
  expect_error([&] { Tokenizer::from_file(p); }, {p.string(), "cannot open"});
  expect_error([&] { Tokenizer::from_dir(p.parent_path()); }, {p.string()});
}

TEST(TokenizerErrors, MalformedJson) {
  const fs::path p = write_temp("dsv3_bad_tokenizer.json", "{\"model\": [1, 2");
  expect_error([&] { Tokenizer::from_file(p); }, {p.string(), "not valid JSON"});
}

TEST(TokenizerErrors, WrongStructure) {
  const fs::path p = write_temp("dsv3_empty_tokenizer.json", "{\"added_tokens\": []}");
  expect_error([&] { Tokenizer::from_file(p); }, {p.string()});
  const fs::path q = write_temp("dsv3_array_tokenizer.json", "[1, 2, 3]");
  expect_error([&] { Tokenizer::from_file(q); }, {q.string()});
}

TEST(TokenizerErrors, UnsupportedComponents) {
  const fs::path p = write_temp("dsv3_wordpiece_tokenizer.json",
                                R"({"normalizer": null, "pre_tokenizer": null, "decoder": null,
          "model": {"type": "WordPiece", "vocab": {}}})");
  expect_error([&] { Tokenizer::from_file(p); }, {p.string(), "unsupported model type WordPiece"});
  const fs::path q = write_temp(
      "dsv3_nfc_tokenizer.json",
      R"({"normalizer": {"type": "NFC"}, "model": {"type": "BPE", "vocab": {}, "merges": []}})");
  expect_error([&] { Tokenizer::from_file(q); }, {q.string(), "unsupported normalizer"});
  const fs::path r =
      write_temp("dsv3_badmerge_tokenizer.json",
                 R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})");
  expect_error([&] { Tokenizer::from_file(r); }, {r.string(), "merge 0"});
  const fs::path s = write_temp(
      "dsv3_badregex_tokenizer.json",
      R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"},
          "model": {"type": "BPE", "vocab": {}, "merges": []}})");
  expect_error([&] { Tokenizer::from_file(s); }, {s.string(), "(unclosed"});
}

TEST(TokenizerErrors, BadConfig) {
  const fs::path tok = write_temp("dsv3_min_tokenizer.json",
                                  R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  const fs::path cfg = write_temp("dsv3_bad_config.json", R"({"bos_token": "<s>"})");
  expect_error([&] { Tokenizer::from_file(tok, cfg); }, {cfg.string(), "bos_token", "<s>"});
  const fs::path missing = fs::temp_directory_path() / "dsv3_missing_config.json";
  expect_error([&] { Tokenizer::from_file(tok, missing); }, {missing.string()});
}

TEST(ChatTemplateErrors, MissingOrUnsupported) {
  const fs::path missing = fs::temp_directory_path() / "dsv3_missing_config.json";
  expect_error([&] { ChatTemplate::from_tokenizer_config(missing); }, {missing.string()});
  const fs::path none = write_temp("dsv3_no_template.json", R"({"bos_token": "<s>"})");
  expect_error([&] { ChatTemplate::from_tokenizer_config(none); },
               {none.string(), "chat_template"});
  const fs::path other = write_temp(
      "dsv3_other_template.json",
      R"({"bos_token": "<s>", "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"})");
  expect_error([&] { ChatTemplate::from_tokenizer_config(other); },
               {other.string(), "unsupported chat template"});
  const fs::path no_tools = write_temp(
      "dsv3_no_tools_template.json",
      R"({"bos_token": "<s>", "chat_template": "{{'<｜User｜>' + m + '<｜Assistant｜></think>' + '<｜end▁of▁sentence｜>'}}"})");
  expect_error([&] { ChatTemplate::from_tokenizer_config(no_tools); },
               {no_tools.string(), "unsupported chat template", "tool-call format"});
}

TEST(ChatTemplateErrors, MessagesFromJson) {
  expect_error([] { chat_messages_from_json(nlohmann::json::object()); }, {"array"});
  expect_error([] { chat_messages_from_json(nlohmann::json::parse(R"([{"content": "x"}])")); },
               {"message 0", "role"});
  expect_error(
      [] {
        chat_messages_from_json(nlohmann::json::parse(R"([{"role": "user", "content": [1]}])"));
      },
      {"message 0", "content"});
  expect_error(
      [] {
        chat_messages_from_json(nlohmann::json::parse(
            R"([{"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "f"}}]}])"));
      },
      {"message 0", "arguments"});
}

}  // namespace
}  // namespace dsv3
