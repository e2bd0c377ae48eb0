// Loading tokenizer.json / tokenizer_config.json and the encode/decode pipelines.
// Encode: added tokens -> pre-tokenizer splits -> BPE per piece (tokenizer/mod.rs
// encode_single_sequence).
#include "tokenizer/tokenizer.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv3 {

using nlohmann::json;

struct Tokenizer::Impl {
  AddedVocab added;
  PreTokenizer pre;
  std::unique_ptr<Bpe> bpe;
  std::unordered_map<std::string, int32_t> ids;    // vocabulary string -> id, added tokens first
  std::vector<std::optional<std::string>> tokens;  // id -> vocabulary string
  std::vector<std::string> bytes;                  // id -> bytes it decodes to
  std::vector<bool> special;
  std::vector<bool> added_token;  // id is an added token (special or not)
  std::optional<int32_t> bos, eos;
  bool add_bos = false, add_eos = false;
};

namespace {

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in, path.string(), ": cannot open (missing file?)");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::parse_error& e) {
    fail(path.string(), ": not valid JSON: ", e.what());
  }
}

void check_supported(const json& j) {
  const json& norm = j.value("normalizer", json());
  // An empty Sequence is the identity; real normalizers (NFC, Lowercase...) are not implemented.
  DSV3_CHECK(norm.is_null() || (norm.value("type", "") == "Sequence" &&
                                norm.value("normalizers", json::array()).empty()),
             "unsupported normalizer ", norm.dump());
  const json& dec = j.value("decoder", json());
  DSV3_CHECK(dec.is_null() || dec.value("type", "") == "ByteLevel", "unsupported decoder ",
             dec.value("type", "?"), " (only ByteLevel is implemented)");
  const json& m = j.at("model");
  DSV3_CHECK(m.value("type", "BPE") == "BPE", "unsupported model type ", m.value("type", "?"),
             " (only BPE is implemented)");
  DSV3_CHECK(!m.value("byte_fallback", false), "unsupported BPE option byte_fallback");
  DSV3_CHECK(m.value("dropout", json()).is_null(), "unsupported BPE option dropout");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json v = m.value(k, json());
    DSV3_CHECK(v.is_null() || v == "", "unsupported BPE option ", k);
  }
}

std::pair<std::string, std::string> split_merge(const std::string& s) {  // "a b"
  const size_t sp = s.find(' ');
  DSV3_CHECK(sp != std::string::npos, "malformed merge \"", s, "\"");
  return {s.substr(0, sp), s.substr(sp + 1)};
}

// Everything but the parsing, shared by tokenizer.json and GGUF vocabularies.
void assemble(Tokenizer::Impl& t, std::unordered_map<std::string, int32_t> vocab,
              const std::vector<std::pair<std::string, std::string>>& merges, const std::vector<AddedToken>& added,
              const json& pre_tokenizer, bool ignore_merges) {
  t.bpe = std::make_unique<Bpe>(vocab, merges, ignore_merges);
  int32_t n = 0;
  for (const auto& [tok, id] : vocab) {
    DSV3_CHECK(id >= 0, "token \"", tok, "\" has a negative id");
    n = std::max(n, id + 1);
  }
  for (const AddedToken& a : added) n = std::max(n, a.id + 1);
  t.tokens.assign(n, std::nullopt);
  t.bytes.assign(n, {});
  t.special.assign(n, false);
  t.added_token.assign(n, false);
  t.ids = vocab;
  for (const auto& [tok, id] : vocab) t.tokens[id] = tok;
  // Added tokens take precedence in both directions (AddedVocabulary is asked first).
  for (const AddedToken& a : added) {
    t.tokens[a.id] = a.content;
    t.ids[a.content] = a.id;
    t.special[a.id] = a.special;
    t.added_token[a.id] = true;
  }
  // The ByteLevel decoder maps a token's characters back to bytes; a token with any other
  // character (e.g. "<｜User｜>") is copied as its own UTF-8 text.
  for (int32_t id = 0; id < n; ++id) {
    if (!t.tokens[id]) continue;
    auto b = byte_level::token_to_bytes(*t.tokens[id]);
    t.bytes[id] = b ? std::move(*b) : *t.tokens[id];
  }
  t.added = AddedVocab(added);
  t.pre = PreTokenizer(pre_tokenizer);
}

void load_model(const json& j, Tokenizer::Impl& t) {
  check_supported(j);
  const json& m = j.at("model");
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(m.at("vocab").size());
  for (const auto& [tok, id] : m.at("vocab").items()) vocab.emplace(tok, id.get<int32_t>());

  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(m.at("merges").size());
  for (const json& mj : m.at("merges")) {
    if (mj.is_string()) {  // older format: "a b"
      merges.push_back(split_merge(mj.get<std::string>()));
    } else {
      merges.emplace_back(mj.at(0).get<std::string>(), mj.at(1).get<std::string>());
    }
  }

  std::vector<AddedToken> added;
  for (const json& a : j.value("added_tokens", json::array())) {
    AddedToken tok;
    tok.id = a.at("id").get<int32_t>();
    tok.content = a.at("content").get<std::string>();
    tok.special = a.value("special", false);
    tok.lstrip = a.value("lstrip", false);
    tok.rstrip = a.value("rstrip", false);
    tok.single_word = a.value("single_word", false);
    tok.normalized = a.value("normalized", !tok.special);
    DSV3_CHECK(tok.id >= 0, "added token \"", tok.content, "\" has a negative id");
    added.push_back(std::move(tok));
  }
  assemble(t, std::move(vocab), merges, added, j.value("pre_tokenizer", json()), m.value("ignore_merges", false));
}

// The pre_tokenizer of the tokenizer.json a GGUF pre-tokenizer name stands for (llama.cpp
// llama-vocab.cpp: LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM and _DEEPSEEK_LLM), as Isolated Splits.
json gguf_pre_tokenizer(const std::string& pre) {
  std::vector<std::string> patterns;
  if (pre == "deepseek-v3") {
    patterns = {
        R"(\p{N}{1,3})",
        "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
    };
  } else if (pre == "deepseek-llm") {
    patterns = {
        "[\r\n]",
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-"
        "ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-"
        "ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
        "\\s+$",
        "[一-龥ࠀ-一가-퟿]+",
        "\\p{N}+",
    };
  } else {
    fail("pre-tokenizer '", pre, "' is not supported (deepseek-v3, deepseek-llm)");
  }
  json seq = json::array();
  for (const auto& p : patterns)
    seq.push_back({{"type", "Split"}, {"pattern", {{"Regex", p}}}, {"behavior", "Isolated"}, {"invert", false}});
  seq.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}});
  return {{"type", "Sequence"}, {"pretokenizers", seq}};
}

// bos_token and friends are either a string or an AddedToken object with "content".
std::optional<std::string> token_field(const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  const json& v = cfg[key];
  return v.is_string() ? v.get<std::string>() : v.at("content").get<std::string>();
}

void load_config(const std::filesystem::path& path, Tokenizer::Impl& t) {
  const json cfg = read_json(path);
  try {
    auto lookup = [&](const char* key) -> std::optional<int32_t> {
      const auto tok = token_field(cfg, key);
      if (!tok) return std::nullopt;
      auto it = t.ids.find(*tok);
      DSV3_CHECK(it != t.ids.end(), key, " \"", *tok, "\" is not in the vocabulary");
      return it->second;
    };
    t.bos = lookup("bos_token");
    t.eos = lookup("eos_token");
    t.add_bos = cfg.value("add_bos_token", false);
    t.add_eos = cfg.value("add_eos_token", false);
  } catch (const Error& e) {
    fail(path.string(), ": ", e.what());
  } catch (const json::exception& e) {
    fail(path.string(), ": unexpected content: ", e.what());
  }
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json,
                               const std::filesystem::path& tokenizer_config_json) {
  auto impl = std::make_shared<Impl>();
  const json j = read_json(tokenizer_json);
  try {
    load_model(j, *impl);
  } catch (const Error& e) {
    fail(tokenizer_json.string(), ": ", e.what());
  } catch (const json::exception& e) {
    fail(tokenizer_json.string(), ": unexpected content: ", e.what());
  }
  if (!tokenizer_config_json.empty()) load_config(tokenizer_config_json, *impl);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_dir(const std::filesystem::path& dir) {
  const auto cfg = dir / "tokenizer_config.json";
  return from_file(dir / "tokenizer.json",
                   std::filesystem::exists(cfg) ? cfg : std::filesystem::path());
}

Tokenizer Tokenizer::from_vocab(const TokenizerVocab& v, const std::string& what) {
  // llama.cpp's token types (llama_token_type).
  constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;
  auto impl = std::make_shared<Impl>();
  try {
    const int32_t n = int32_t(v.tokens.size());
    DSV3_CHECK(v.tokens.size() < (size_t(1) << 31), "too many tokens");
    DSV3_CHECK(v.token_types.empty() || v.token_types.size() == v.tokens.size(), "token_type has ",
               v.token_types.size(), " entries for ", v.tokens.size(), " tokens");
    std::unordered_map<std::string, int32_t> vocab;
    std::vector<AddedToken> added;
    vocab.reserve(v.tokens.size());
    for (int32_t id = 0; id < n; ++id) {
      const int32_t type = v.token_types.empty() ? kNormal : v.token_types[size_t(id)];
      const std::string& tok = v.tokens[size_t(id)];
      switch (type) {
        case kNormal: case kUnknown: case kByte:
          vocab.emplace(tok, id);
          break;
        case kControl: case kUserDefined: {
          vocab.emplace(tok, id);
          AddedToken a;
          a.id = id;
          a.content = tok;
          a.special = type == kControl;
          a.normalized = !a.special;  // tokenizers' default for added tokens
          added.push_back(std::move(a));
          break;
        }
        case kUnused:  // a placeholder the converter wrote for an id the HF tokenizer lacks
          break;
        default:
          fail("token ", id, " has unknown token type ", type);
      }
    }
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(v.merges.size());
    for (const std::string& m : v.merges) merges.push_back(split_merge(m));
    assemble(*impl, std::move(vocab), merges, added, gguf_pre_tokenizer(v.pre), /*ignore_merges=*/false);
    // Unused ids stay unknown, but keep the table as long as the file's list.
    if (int32_t(impl->tokens.size()) < n) {
      impl->tokens.resize(size_t(n));
      impl->bytes.resize(size_t(n));
      impl->special.resize(size_t(n), false);
    }
    for (const auto& id : {v.bos, v.eos})
      DSV3_CHECK(!id || (*id >= 0 && *id < n && impl->tokens[size_t(*id)]), "BOS/EOS id ", id.value_or(-1),
                 " is not a token");
  } catch (const Error& e) {
    fail(what, ": ", e.what());
  }
  impl->bos = v.bos;
  impl->eos = v.eos;
  impl->add_bos = v.add_bos;
  impl->add_eos = v.add_eos;
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const size_t bad = utf8::first_invalid(text);
  DSV3_CHECK(bad == text.size(), "cannot tokenize: invalid UTF-8 at byte ", bad, " of ",
             text.size());
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  std::vector<Segment> segments;
  std::vector<std::pair<size_t, size_t>> pieces;
  impl_->added.split(text, segments);
  for (const Segment& s : segments) {
    if (s.id >= 0) {
      ids.push_back(s.id);
      continue;
    }
    const std::string_view part = text.substr(s.begin, s.end - s.begin);
    impl_->pre.split(part, pieces);
    for (const auto& [b, e] : pieces) impl_->bpe->encode(part.substr(b, e - b), ids);
  }
  return ids;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids = encode(text);
  if (!add_special) return ids;
  if (impl_->add_bos && impl_->bos) ids.insert(ids.begin(), *impl_->bos);
  if (impl_->add_eos && impl_->eos) ids.push_back(*impl_->eos);
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string raw;
  for (const int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || !impl_->tokens[id]) continue;
    if (skip_special && impl_->special[id]) continue;
    raw += impl_->bytes[id];
  }
  std::string out;
  out.reserve(raw.size());
  utf8::append_lossy(out, raw);
  return out;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->tokens.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->ids.find(std::string(token));
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return std::nullopt;
  return impl_->tokens[id];
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return impl_->bytes[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->special[id];
}

bool Tokenizer::is_added(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->added_token[id];
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
bool Tokenizer::add_eos_token() const { return impl_->add_eos; }

}  // namespace dsv3
