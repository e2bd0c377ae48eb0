#include "io/gguf_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf_writer.h"

namespace dsv3 {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// llama.cpp's llama_token_type (gguf-py TokenType).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

json read_json(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  DSV3_CHECK(f.good(), p.string(), ": cannot open");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    fail(p.string(), ": malformed JSON: ", e.what());
  }
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  DSV3_CHECK(f.good(), p.string(), ": cannot open");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The regexes of tokenizer.json's Split pre-tokenizers, in order.
std::vector<std::string> split_patterns(const json& pre) {
  std::vector<std::string> out;
  if (!pre.is_object()) return out;
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    for (const json& p : pre["pretokenizers"])
      for (std::string& s : split_patterns(p)) out.push_back(std::move(s));
  } else if (pre.value("type", "") == "Split" && pre.contains("pattern") && pre["pattern"].is_object()) {
    const json& pat = pre["pattern"];
    if (pat.contains("Regex") && pat["Regex"].is_string()) out.push_back(pat["Regex"].get<std::string>());
  }
  return out;
}

// llama.cpp's name for the pre-tokenizer (llama-vocab.cpp's regexes per LLAMA_VOCAB_PRE_TYPE).
// The converter finds it by hashing a test string's tokens; without a Python tokenizer to run,
// dsv3 compares the Split regexes themselves.
std::string detect_pre_tokenizer(const std::vector<std::string>& pats) {
  // DeepSeek-V3 / R1 (LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM).
  static const std::vector<std::string> kDeepseekV3 = {
      "\\p{N}{1,3}",
      "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
      "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
  };
  if (pats == kDeepseekV3) return "deepseek-v3";
  // DeepSeek-LLM / V2 (LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_LLM): newlines, letters, punctuation,
  // trailing spaces, CJK, numbers.
  if (pats.size() == 6 && pats.front() == "[\r\n]" && pats.back() == "\\p{N}+") return "deepseek-llm";
  return "";
}

// A special-token entry of tokenizer_config.json: a string or an AddedToken object.
std::string token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

// gguf-py's does_token_look_special: added tokens that are control tokens in all but name.
bool looks_special(const std::string& t) {
  auto starts = [&](const char* p) { return t.rfind(p, 0) == 0; };
  auto ends = [&](const std::string& s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || (starts("<|") && ends("|>")) ||
         (starts("<\uff5c") && ends("\uff5c>")) || (starts("<unused") && ends(">"));
}

}  // namespace

void add_tokenizer_metadata(GgufWriter& w, const std::string& dir_s, int64_t vocab_size, const std::string& pre) {
  const fs::path dir(dir_s), tok_path = dir / "tokenizer.json", cfg_path = dir / "tokenizer_config.json";
  DSV3_CHECK(fs::exists(tok_path), dir_s, ": no tokenizer.json (a GGUF file carries its tokenizer)");
  const json tok = read_json(tok_path);
  const std::string what = tok_path.string();
  DSV3_CHECK(tok.is_object() && tok.contains("model") && tok["model"].is_object(), what, ": no 'model' object");
  const json& model = tok["model"];
  DSV3_CHECK(model.value("type", "BPE") == "BPE", what, ": model type '", model.value("type", ""),
             "' is not BPE (GGUF tokenizer gpt2 needs byte-level BPE)");
  DSV3_CHECK(model.contains("vocab") && model["vocab"].is_object(), what, ": model.vocab is not an object");
  DSV3_CHECK(model.contains("merges") && model["merges"].is_array(), what, ": model.merges is not an array");

  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int32_t> types(static_cast<size_t>(vocab_size), kUnused);
  std::vector<bool> known(static_cast<size_t>(vocab_size), false);
  auto set_token = [&](int64_t id, const std::string& text, int32_t type) {
    DSV3_CHECK(id >= 0 && id < vocab_size, what, ": token '", text, "' has id ", id, ", outside the model's ",
               vocab_size, " embedding rows");
    tokens[size_t(id)] = text;
    types[size_t(id)] = type;
    known[size_t(id)] = true;
  };
  for (const auto& [text, id] : model["vocab"].items()) {
    DSV3_CHECK(id.is_number_integer(), what, ": vocab entry '", text, "' has a non-integer id");
    set_token(id.get<int64_t>(), text, kNormal);
  }
  std::map<std::string, int64_t> added;  // content -> id, for the special tokens below
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const json& t : tok["added_tokens"]) {
      DSV3_CHECK(t.is_object() && t.contains("id") && t["id"].is_number_integer() && t.contains("content") &&
                     t["content"].is_string(),
                 what, ": malformed added_tokens entry ", t.dump());
      const std::string content = t["content"].get<std::string>();
      const bool special = t.value("special", false) || looks_special(content);
      set_token(t["id"].get<int64_t>(), content, special ? kControl : kUserDefined);
      added[content] = t["id"].get<int64_t>();
    }
  }
  for (int64_t i = 0; i < vocab_size; ++i)
    if (!known[size_t(i)]) tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";

  std::vector<std::string> merges;
  merges.reserve(model["merges"].size());
  for (const json& m : model["merges"]) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else {  // newer tokenizers write each merge as a pair
      DSV3_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), what,
                 ": malformed merge ", m.dump());
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
  }

  std::string pre_name = pre;
  if (pre_name.empty()) {
    pre_name = detect_pre_tokenizer(split_patterns(tok.value("pre_tokenizer", json())));
    DSV3_CHECK(!pre_name.empty(), what,
               ": pre-tokenizer is neither DeepSeek-V3's nor DeepSeek-LLM's; name llama.cpp's with --tokenizer-pre");
  }

  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", pre_name);
  w.set_strings("tokenizer.ggml.tokens", tokens);
  w.set_i32s("tokenizer.ggml.token_type", types);
  w.set_strings("tokenizer.ggml.merges", merges);

  const json cfg = fs::exists(cfg_path) ? read_json(cfg_path) : json::object();
  const json model_cfg = fs::exists(dir / "config.json") ? read_json(dir / "config.json") : json::object();
  // BOS / EOS / padding: tokenizer_config.json's tokens, else config.json's ids (SpecialVocab).
  for (const char* kind : {"bos", "eos", "unk", "pad"}) {
    std::optional<int64_t> id;
    const std::string key = std::string(kind) + "_token";
    if (cfg.is_object() && cfg.contains(key)) {
      const std::string content = token_content(cfg[key]);
      if (auto it = added.find(content); it != added.end()) id = it->second;
      else if (model["vocab"].contains(content) && model["vocab"][content].is_number_integer())
        id = model["vocab"][content].get<int64_t>();
    }
    const std::string id_key = key + "_id";
    if (!id && model_cfg.is_object() && model_cfg.contains(id_key)) {
      const json& v = model_cfg[id_key];
      if (v.is_number_integer()) id = v.get<int64_t>();
      else if (v.is_array() && !v.empty() && v[0].is_number_integer()) id = v[0].get<int64_t>();
    }
    if (!id || *id < 0 || *id >= vocab_size) continue;
    const std::string gguf_kind = std::string(kind) == "pad" ? "padding" : kind;
    w.set_u32("tokenizer.ggml." + gguf_kind + "_token_id", uint32_t(*id));
  }
  for (const char* kind : {"bos", "eos"}) {
    const std::string key = std::string("add_") + kind + "_token";
    if (cfg.is_object() && cfg.contains(key) && cfg[key].is_boolean())
      w.set_bool("tokenizer.ggml." + key, cfg[key].get<bool>());
  }

  // The chat template: chat_template.jinja beside the tokenizer, else tokenizer_config.json's
  // (a string, or named templates of which "default" is the main one).
  if (fs::exists(dir / "chat_template.jinja")) {
    w.set_string("tokenizer.chat_template", read_text(dir / "chat_template.jinja"));
  } else if (cfg.is_object() && cfg.contains("chat_template")) {
    const json& t = cfg["chat_template"];
    if (t.is_string()) {
      w.set_string("tokenizer.chat_template", t.get<std::string>());
    } else if (t.is_array()) {
      for (const json& e : t) {
        DSV3_CHECK(e.is_object() && e.contains("name") && e["name"].is_string() && e.contains("template") &&
                       e["template"].is_string(),
                   cfg_path.string(), ": malformed chat_template entry");
        const std::string name = e["name"].get<std::string>();
        w.set_string(name == "default" ? "tokenizer.chat_template" : "tokenizer.chat_template." + name,
                     e["template"].get<std::string>());
      }
    }
  }
}

}  // namespace dsv3
