// The token mask engine: the trie walk against a slow reference that tries every token, on the
// real DeepSeek-V3 vocabulary and the embedded dsv3-kjv one; constrained sampling always ends
// in a value the schema accepts.
#include <gtest/gtest.h>

#include <random>

#include "engine/token_mask.h"
#include "engine/tool_call_grammar.h"

namespace dsv3 {
namespace {

using ojson = nlohmann::ordered_json;

const Tokenizer& deepseek() {
  static const Tokenizer t = Tokenizer::from_dir(DSV3_TOKENIZER_DIR);
  return t;
}
const Tokenizer& kjv() {
  static const Tokenizer t = Tokenizer::from_dir(DSV3_KJV_DIR);
  return t;
}

std::shared_ptr<const JsonGrammar> schema(const std::string& s) {
  return std::make_shared<const JsonGrammar>(compile_json_schema(ojson::parse(s)));
}

// The slow reference: every token's bytes through the automaton.
TokenMask reference_mask(const VocabTrie& trie, const JsonAutomaton& state, int32_t eos) {
  TokenMask m(trie.n_vocab());
  for (int32_t id = 0; id < trie.n_vocab(); ++id) {
    if (id == eos) {
      if (state.can_end()) m.set(id);
      continue;
    }
    const std::string_view b = trie.bytes(id);
    JsonAutomaton a = state;
    if (!b.empty() && a.advance(b)) m.set(id);
  }
  return m;
}

int32_t first_diff(const TokenMask& a, const TokenMask& b, int32_t n) {
  for (int32_t i = 0; i < n; ++i)
    if (a.test(i) != b.test(i)) return i;
  return -1;
}

const char* kSchema = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":12},
  "kind":{"enum":["fruit","vegetable",3]},
  "count":{"type":"integer","minimum":0,"maximum":250},
  "price":{"type":"number"},
  "tags":{"type":"array","items":{"type":"string","minLength":1,"maxLength":5},"maxItems":3},
  "ok":{"type":["boolean","null"]}},
  "required":["name","kind","count","tags","ok"],"additionalProperties":false})";

TEST(VocabTrie, HoldsEveryNonAddedTokenOnce) {
  const Tokenizer& tok = deepseek();
  const int32_t n_vocab = 129280;  // DeepSeek-V3's embedding rows: more than the tokenizer's ids
  VocabTrie trie(tok, n_vocab);
  const auto markers = tool_marker_bytes(tok);  // the tool-call markers, one byte each
  ASSERT_EQ(markers.size(), 5u);
  for (const auto& [id, byte] : markers) EXPECT_EQ(trie.bytes(id), std::string(1, byte));
  std::vector<int> seen(size_t(n_vocab), 0), not_plain(size_t(n_vocab), 0), plain(size_t(n_vocab), 0);
  for (int32_t id : trie.all().token_ids) seen[size_t(id)]++;
  for (int32_t id : trie.not_plain().token_ids) not_plain[size_t(id)]++;
  for (const auto& [chars, id] : trie.plain_by_chars()) plain[size_t(id)]++;
  for (int32_t id = 0; id < n_vocab; ++id) {
    const bool marker = std::any_of(markers.begin(), markers.end(), [&](const auto& m) { return m.first == id; });
    const std::string_view b = tok.token_bytes(id);
    const bool not_utf8 = std::any_of(b.begin(), b.end(), [](char c) { return uint8_t(c) >= 0xF8 && uint8_t(c) <= 0xFC; });
    const bool expect = marker || (id < tok.vocab_size() && !tok.is_added(id) && !b.empty() && !not_utf8);
    ASSERT_EQ(seen[size_t(id)], expect ? 1 : 0) << id;
    ASSERT_EQ(plain[size_t(id)] + not_plain[size_t(id)], seen[size_t(id)]) << id;  // a partition
  }
  EXPECT_GT(trie.plain_by_chars().size(), 100000u);  // most tokens are plain string content
  // Walking each node's path reproduces the bytes of the tokens that end there.
  for (const ByteTrie* t : {&trie.all(), &trie.not_plain()}) {
    std::string path;
    for (const ByteTrie::Node& n : std::span(t->nodes).subspan(1)) {
      path.resize(n.depth - 1);
      path += char(n.byte);
      for (uint32_t k = n.tok_begin; k < n.tok_end; ++k) ASSERT_EQ(trie.bytes(t->token_ids[k]), path);
    }
  }
}

// States along a document: the mask of each equals the reference's.
void check_masks_along(const Tokenizer& tok, int32_t n_vocab, const std::shared_ptr<const JsonGrammar>& g,
                       const std::string& doc, size_t every) {
  auto trie = std::make_shared<const VocabTrie>(tok, n_vocab);
  const int32_t eos = *tok.eos_id();
  JsonAutomaton a(g);
  for (size_t i = 0; i <= doc.size(); ++i) {
    if (i % every == 0 || i == doc.size()) {
      const TokenMask fast = compute_token_mask(*trie, a, std::span(&eos, 1));
      const TokenMask slow = reference_mask(*trie, a, eos);
      const int32_t d = first_diff(fast, slow, n_vocab);
      ASSERT_EQ(d, -1) << "after \"" << doc.substr(0, i) << "\": token " << d << " \"" << trie->bytes(d)
                       << "\" fast " << fast.test(d) << " slow " << slow.test(d);
      EXPECT_GT(fast.count(), 0) << doc.substr(0, i);
    }
    if (i < doc.size()) {
      ASSERT_TRUE(a.advance(uint8_t(doc[i]))) << doc.substr(0, i + 1);
    }
  }
  EXPECT_TRUE(a.finished());
  const TokenMask end = compute_token_mask(*trie, a, std::span(&eos, 1));
  EXPECT_EQ(end.count(), 1);
  EXPECT_TRUE(end.test(eos));
}

TEST(TokenMask, MatchesTheSlowReferenceOnTheKjvVocabulary) {
  const Tokenizer& tok = kjv();
  check_masks_along(tok, tok.vocab_size(), schema(kSchema),
                    R"({"name": "Ab\"\u00e9é", "kind":3,"count":249,"tags":["x","yz"],"ok":null})", 1);
  check_masks_along(tok, tok.vocab_size(), std::make_shared<const JsonGrammar>(json_object_grammar()),
                    "{\n  \"a\": [1.5e+3, -0, true, {\"b\": \"\xF0\x9F\x98\x80\"}],\n  \"c\": null\n}", 1);
}

TEST(TokenMask, MatchesTheSlowReferenceOnTheDeepSeekVocabulary) {
  check_masks_along(deepseek(), 129280, schema(kSchema),
                    R"({"name":"pear \"é\"","kind":"fruit","count":12,"price":-1.25e2,"tags":["a"],"ok":true})", 7);
}

TEST(TokenMask, MatchesTheSlowReferenceOnAForcedToolCall) {
  // The markers are tokens of their own; the arguments follow the tool's schema.
  const std::vector<ToolDefinition> tools = {{"lookup", std::nullopt, kSchema}, {"noop", std::nullopt, "{}"}};
  const std::string m(kToolMarkerBytes, 5);
  for (const ChatTemplateKind kind : {ChatTemplateKind::kDeepSeekV3, ChatTemplateKind::kDeepSeekV31}) {
    const ToolCallSyntax syn = tool_call_syntax(kind);
    auto g = std::make_shared<const JsonGrammar>(tool_call_grammar(syn, tools, "", true));
    const std::string args = R"({"name":"fig","kind":"fruit","count":2,"tags":[],"ok":false})";
    const std::string call = syn.name_first ? str_cat(m[1], "lookup", m[2], args, m[3])
                                            : str_cat(m[1], "function", m[2], "lookup\n```json\n", args, "\n```", m[3]);
    check_masks_along(deepseek(), 129280, g, str_cat(m[0], call, syn.call_separator, call, m[4]), 5);
  }
}

TEST(TokenMask, CachesMasksPerState) {
  const Tokenizer& tok = kjv();
  auto trie = std::make_shared<const VocabTrie>(tok, tok.vocab_size());
  TokenConstraint c(trie, schema(R"({"type":"object","properties":{"a":{"type":"string"}},"required":["a"]})"),
                    {*tok.eos_id()});
  const TokenMask first = c.mask();
  EXPECT_EQ(c.stats().masks_computed, 1);
  c.mask();
  EXPECT_EQ(c.stats().masks_cached, 1);
  // Inside an unbounded string every plain character leads back to the same state.
  for (int32_t t : tok.encode("{\"a\": \"hello world")) {
    ASSERT_TRUE(c.allows(t));
    c.accept(t);
  }
  c.mask();
  const int64_t computed = c.stats().masks_computed;
  for (int32_t t : tok.encode(" and more")) c.accept(t);
  c.mask();
  EXPECT_EQ(c.stats().masks_computed, computed);
}

// Random logits, sampled and greedy, on both vocabularies: every generation ends (the schema
// is bounded) in a value that has the schema's shape.
void check_generations(const Tokenizer& tok, int32_t n_vocab, float temperature, int runs) {
  auto trie = std::make_shared<const VocabTrie>(tok, n_vocab);
  auto g = schema(R"({"type":"object","properties":{
    "name":{"type":"string","maxLength":8},"n":{"type":"integer","minimum":-3,"maximum":40},
    "tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":2},"x":{"type":"boolean"}},
    "required":["name","n","tags"],"additionalProperties":false})");
  const int32_t eos = *tok.eos_id();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int run = 0; run < runs; ++run) {
    SamplingParams p;
    p.temperature = temperature;
    p.seed = uint64_t(run);
    Sampler sampler(p);
    TokenConstraint c(trie, g, {eos});
    std::vector<int32_t> out;
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    bool ended = false;
    for (int step = 0; step < 400 && !ended; ++step) {
      for (float& l : logits) l = normal(rng);
      const int32_t t = sample_constrained(sampler, logits, c);
      ASSERT_GE(t, 0);
      ASSERT_TRUE(c.allows(t));
      c.accept(t);
      if (t == eos) ended = true;
      else out.push_back(t);
    }
    ASSERT_TRUE(ended) << tok.decode(out);
    const std::string text = tok.decode(out);
    ojson j;
    ASSERT_NO_THROW(j = ojson::parse(text)) << text;
    ASSERT_TRUE(j.is_object());
    EXPECT_TRUE(j["name"].is_string() && j["name"].get<std::string>().size() <= 8 * 4) << text;
    EXPECT_TRUE(j["n"].is_number_integer() && j["n"] >= -3 && j["n"] <= 40) << text;
    EXPECT_TRUE(j["tags"].is_array() && j["tags"].size() <= 2) << text;
  }
}

TEST(TokenMask, ConstrainedSamplingEndsInAValidValueOnTheKjvVocabulary) {
  check_generations(kjv(), kjv().vocab_size(), 1.0f, 20);
  check_generations(kjv(), kjv().vocab_size(), 0.0f, 2);
}

TEST(TokenMask, ConstrainedSamplingEndsInAValidValueOnTheDeepSeekVocabulary) {
  check_generations(deepseek(), 129280, 1.0f, 3);
}

TEST(TokenMask, RejectedDrawsFallBackToTheBestAllowedToken) {
  const Tokenizer& tok = kjv();
  auto trie = std::make_shared<const VocabTrie>(tok, tok.vocab_size());
  TokenConstraint c(trie, schema(R"({"type":"boolean"})"), {*tok.eos_id()});
  std::vector<float> logits(size_t(tok.vocab_size()), 0.0f);
  const int32_t bad = tok.encode("hello")[0];
  logits[size_t(bad)] = 10.0f;
  int32_t best_allowed = -1;
  const TokenMask& m = c.mask();
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    if (m.test(id)) {
      logits[size_t(id)] = 1.0f + float(id) * 1e-4f;
      best_allowed = id;
    }
  Sampler greedy(SamplingParams{});
  EXPECT_EQ(sample_constrained(greedy, logits, c), best_allowed);
  // Sampling at temperature 1 with top-k 1 keeps only the rejected token: the masked logits decide.
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 1;
  Sampler topk(p);
  EXPECT_EQ(sample_constrained(topk, logits, c), best_allowed);
}

}  // namespace
}  // namespace dsv3
