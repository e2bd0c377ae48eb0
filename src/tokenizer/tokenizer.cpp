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
      const std::string s = mj.get<std::string>();
      const size_t sp = s.find(' ');
      DSV3_CHECK(sp != std::string::npos, "malformed merge \"", s, "\"");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else {
      merges.emplace_back(mj.at(0).get<std::string>(), mj.at(1).get<std::string>());
    }
  }
  t.bpe = std::make_unique<Bpe>(vocab, merges, m.value("ignore_merges", false));

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

  int32_t n = 0;
  for (const auto& [tok, id] : vocab) {
    DSV3_CHECK(id >= 0, "token \"", tok, "\" has a negative id");
    n = std::max(n, id + 1);
  }
  for (const AddedToken& a : added) n = std::max(n, a.id + 1);
  t.tokens.assign(n, std::nullopt);
  t.bytes.assign(n, {});
  t.special.assign(n, false);
  t.ids = vocab;
  for (const auto& [tok, id] : vocab) t.tokens[id] = tok;
  // Added tokens take precedence in both directions (AddedVocabulary is asked first).
  for (const AddedToken& a : added) {
    t.tokens[a.id] = a.content;
    t.ids[a.content] = a.id;
    t.special[a.id] = a.special;
  }
  // The ByteLevel decoder maps a token's characters back to bytes; a token with any other
  // character (e.g. "<｜User｜>") is copied as its own UTF-8 text.
  for (int32_t id = 0; id < n; ++id) {
    if (!t.tokens[id]) continue;
    auto b = byte_level::token_to_bytes(*t.tokens[id]);
    t.bytes[id] = b ? std::move(*b) : *t.tokens[id];
  }
  t.added = AddedVocab(added);
  t.pre = PreTokenizer(j.value("pre_tokenizer", json()));
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

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
bool Tokenizer::add_eos_token() const { return impl_->add_eos; }

}  // namespace dsv3
