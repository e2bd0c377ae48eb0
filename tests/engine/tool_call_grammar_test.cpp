// Forced tool calls (tool_choice "required" or a named function): the grammar spells the calls
// as each DeepSeek format writes them with schema-valid arguments, and the embedded dsv3-kjv
// model (which never calls tools by itself) produces such calls through the scheduler, with and
// without MTP speculation.
#include <gtest/gtest.h>

#include "engine/scheduler.h"
#include "engine/token_mask.h"
#include "engine/tool_call_grammar.h"

namespace dsv3 {
namespace {

using ojson = nlohmann::ordered_json;

const std::string B(1, kToolMarkerBytes[0]), CB(1, kToolMarkerBytes[1]), SEP(1, kToolMarkerBytes[2]),
    CE(1, kToolMarkerBytes[3]), E(1, kToolMarkerBytes[4]);

std::vector<ToolDefinition> tools() {
  return {{"get_weather", "Weather of a city",
           R"({"type":"object","properties":{"city":{"type":"string","maxLength":12},"days":{"type":"integer","minimum":1,"maximum":7}},"required":["city"],"additionalProperties":false})"},
          {"ping", std::nullopt, R"({"type":"object","properties":{"n":{"type":"integer"}},"additionalProperties":false})"}};
}

// `free_note`: also a tool with no parameter schema ("{}": any object).
std::shared_ptr<const JsonGrammar> grammar(ChatTemplateKind kind, std::string_view function, bool parallel,
                                           bool free_note = true) {
  std::vector<ToolDefinition> t = tools();
  if (free_note) t.push_back({"note", std::nullopt, "{}"});
  return std::make_shared<const JsonGrammar>(tool_call_grammar(tool_call_syntax(kind), t, function, parallel));
}

bool complete(const std::shared_ptr<const JsonGrammar>& g, std::string_view text) {
  JsonAutomaton a(g);
  return a.advance(text) && a.finished();
}
bool prefix_ok(const std::shared_ptr<const JsonGrammar>& g, std::string_view text) {
  JsonAutomaton a(g);
  return a.advance(text);
}

std::string v3_call(const std::string& name, const std::string& args) {
  return CB + "function" + SEP + name + "\n```json\n" + args + "\n```" + CE;
}
std::string v31_call(const std::string& name, const std::string& args) { return CB + name + SEP + args + CE; }

TEST(ToolCallGrammar, SpellsTheV3FamilyFormat) {
  const auto any = grammar(ChatTemplateKind::kDeepSeekV3, "", true);
  const std::string weather = v3_call("get_weather", R"({"city": "Paris", "days": 3})");
  EXPECT_TRUE(complete(any, B + weather + E));
  EXPECT_TRUE(complete(any, B + weather + "\n" + v3_call("note", R"({"x": [1, {}]})") + "\n" + weather + E));
  EXPECT_FALSE(prefix_ok(any, "Sure" + B));                                  // no text before the calls
  EXPECT_FALSE(prefix_ok(any, B + v3_call("get_weather", R"({"days": 3})")));  // city is required
  EXPECT_FALSE(prefix_ok(any, B + v3_call("get_weather", R"({"city": "Paris", "days": 8})")));
  EXPECT_FALSE(prefix_ok(any, B + v3_call("get_time", "{}")));  // not a declared tool
  EXPECT_FALSE(prefix_ok(any, B + v3_call("note", "[]")));      // arguments are an object
  EXPECT_FALSE(prefix_ok(any, B + v3_call("ping", R"({"x": 1})")));  // only declared properties
  EXPECT_FALSE(prefix_ok(any, B + weather + weather));          // calls are joined by "\n"
  JsonAutomaton open(any);
  ASSERT_TRUE(open.advance(B + weather));
  EXPECT_FALSE(open.can_end());  // calls_end still to come

  const auto one = grammar(ChatTemplateKind::kDeepSeekV3, "", false);  // parallel_tool_calls false
  EXPECT_TRUE(complete(one, B + weather + E));
  EXPECT_FALSE(prefix_ok(one, B + weather + "\n"));

  const auto named = grammar(ChatTemplateKind::kDeepSeekV3, "ping", true);
  EXPECT_TRUE(complete(named, B + v3_call("ping", R"({"n": -4})") + E));
  EXPECT_FALSE(prefix_ok(named, B + v3_call("get_weather", R"({"city": "Paris"})")));
}

TEST(ToolCallGrammar, SpellsTheV31Format) {
  const auto any = grammar(ChatTemplateKind::kDeepSeekV31, "", true);
  const std::string weather = v31_call("get_weather", R"({"city":"Oslo"})");
  EXPECT_TRUE(complete(any, B + weather + E));
  EXPECT_TRUE(complete(any, B + weather + v31_call("note", "{}") + E));  // no separator
  EXPECT_FALSE(prefix_ok(any, B + CB + "function" + SEP));
  EXPECT_FALSE(prefix_ok(any, B + weather + "\n"));
}

TEST(ToolCallGrammar, ArgumentsAreCompactAndNothingComesBeforeTheCalls) {
  const auto any = grammar(ChatTemplateKind::kDeepSeekV3, "", true);
  EXPECT_FALSE(prefix_ok(any, " " + B));
  EXPECT_FALSE(prefix_ok(any, B + v3_call("get_weather", "{\"city\":  \"Rome\"}")));  // one space at most
  EXPECT_FALSE(prefix_ok(any, B + v3_call("get_weather", "{\n\"city\": \"Rome\"}")));
}

TEST(ToolCallGrammar, OnlyTheMarkerTokensSpellTheMarkers) {
  // Byte-level vocabularies hold a token for each byte, 0xF8..0xFC included: none of them may
  // pass for a marker.
  const Tokenizer tok = Tokenizer::from_dir(DSV3_KJV_DIR);
  auto trie = std::make_shared<const VocabTrie>(tok, tok.vocab_size());
  const auto markers = tool_marker_bytes(tok);
  ASSERT_EQ(markers.size(), 5u);
  TokenConstraint c(trie, grammar(ChatTemplateKind::kDeepSeekV31, "", true), {*tok.eos_id()});
  int raw = 0;
  for (const std::string& text : {std::string(), B, B + CB + "ping"}) {
    for (unsigned char ch : text) {
      const auto m = std::find_if(markers.begin(), markers.end(), [&](const auto& x) { return uint8_t(x.second) == ch; });
      const auto ids = m != markers.end() ? std::vector<int32_t>{m->first} : tok.encode(std::string(1, char(ch)));
      for (int32_t id : ids) c.accept(id);
    }
    for (int32_t id = 0; id < tok.vocab_size(); ++id) {
      const std::string_view b = tok.token_bytes(id);
      if (tok.is_added(id) || b.find_first_of(std::string_view(kToolMarkerBytes, 5)) == std::string_view::npos) continue;
      ++raw;
      EXPECT_FALSE(c.allows(id)) << id;
    }
    const auto next = std::find_if(markers.begin(), markers.end(), [&](const auto& x) { return c.allows(x.first); });
    EXPECT_NE(next, markers.end());
    c = TokenConstraint(trie, grammar(ChatTemplateKind::kDeepSeekV31, "", true), {*tok.eos_id()});
  }
  EXPECT_GT(raw, 0);
}

TEST(ToolCallGrammar, ParametersOutsideTheSubsetNameTheToolAndKeyword) {
  std::vector<ToolDefinition> t = tools();
  t.push_back({"dated", std::nullopt, R"({"type":"object","properties":{"d":{"type":"string","format":"date"}}})"});
  try {
    tool_call_grammar(tool_call_syntax(ChatTemplateKind::kDeepSeekV3), t, "", true);
    FAIL() << "no SchemaError";
  } catch (const SchemaError& e) {
    EXPECT_EQ(e.keyword, "format");
    EXPECT_EQ(e.path, "tools[2].function.parameters/properties/d/format");
  }
  // A named function compiles only its own schema.
  EXPECT_NO_THROW(tool_call_grammar(tool_call_syntax(ChatTemplateKind::kDeepSeekV3), t, "ping", true));
}

// The kjv model through the scheduler: its answer's tokens, markers mapped to their bytes, are a
// complete text of the grammar, and each call's arguments satisfy the tool's schema.
struct Calls {
  std::vector<std::pair<std::string, ojson>> calls;
  std::string finish;
  std::vector<int32_t> ids;
};

Calls run(Scheduler& sched, const Tokenizer& tok, const std::shared_ptr<const JsonGrammar>& g, float temperature,
          uint64_t seed) {
  GenRequest r;
  r.prompt = tok.encode("And Moses said unto the LORD,", true);
  r.max_tokens = 300;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.grammar = g;
  r.token_pieces = true;
  auto job = sched.submit(r);
  Calls c;
  std::string bytes;
  const auto markers = tool_marker_bytes(tok);
  for (;;) {
    JobOutput o = job->take(std::chrono::milliseconds(1000));
    for (const TokenPiece& p : o.pieces) {
      if (p.id < 0) continue;
      c.ids.push_back(p.id);
      auto m = std::find_if(markers.begin(), markers.end(), [&](const auto& x) { return x.first == p.id; });
      bytes += m != markers.end() ? std::string(1, m->second) : std::string(tok.token_bytes(p.id));
    }
    if (o.done) {
      c.finish = o.finish_reason;
      break;
    }
  }
  JsonAutomaton a(g);
  EXPECT_TRUE(a.advance(bytes) && a.finished()) << ojson(bytes).dump();
  // V3 family: CB "function" SEP name "\n```json\n" args "\n```" CE.
  size_t at = 0;
  while ((at = bytes.find(CB, at)) != std::string::npos) {
    const size_t name_at = bytes.find(SEP, at) + 1, args_at = bytes.find("\n```json\n", name_at) + 9;
    const size_t args_end = bytes.find("\n```" + CE, args_at);
    c.calls.push_back({bytes.substr(name_at, args_at - 9 - name_at), ojson::parse(bytes.substr(args_at, args_end - args_at))});
    at = args_end;
  }
  return c;
}

TEST(ToolCallGrammar, TheKjvModelCallsAToolWhenForcedWithAndWithoutSpeculation) {
  const LoadedModel m = load_model(DSV3_KJV_DIR);
  const Tokenizer tok = Tokenizer::from_dir(DSV3_KJV_DIR);
  ASSERT_EQ(tool_marker_bytes(tok).size(), 5u);
  // Bounded arguments only: free-form ones could run to max_tokens at temperature 1.
  // One call (parallel_tool_calls false): how many a sampled answer makes is up to the model.
  const auto any = grammar(ChatTemplateKind::kDeepSeekV3, "", false, false);
  const auto named = grammar(ChatTemplateKind::kDeepSeekV3, "get_weather", false, false);
  std::vector<int32_t> greedy[2];
  for (int k : {0, 2}) {
    SchedulerOptions o;
    o.max_batch = 2;
    o.ctx_size = 512;
    o.threads = 1;
    o.speculative_k = k;
    Scheduler sched(*m.model, tok, o);
    for (uint64_t seed = 0; seed < 2; ++seed) {
      const Calls c = run(sched, tok, any, 1.0f, seed);
      EXPECT_EQ(c.finish, "stop");
      ASSERT_GE(c.calls.size(), 1u);
      for (const auto& [name, args] : c.calls) {
        ASSERT_TRUE(name == "get_weather" || name == "ping") << name;
        ASSERT_TRUE(args.is_object());
        if (name == "ping") {
          EXPECT_TRUE(!args.contains("n") || args["n"].is_number_integer()) << args;
        }
        if (name == "get_weather") {
          EXPECT_TRUE(args["city"].is_string()) << args;
          EXPECT_TRUE(!args.contains("days") || (args["days"] >= 1 && args["days"] <= 7)) << args;
        }
      }
    }
    const Calls c = run(sched, tok, named, 0.0f, 0);
    EXPECT_EQ(c.finish, "stop");
    ASSERT_EQ(c.calls.size(), 1u);
    EXPECT_EQ(c.calls[0].first, "get_weather");
    greedy[k / 2] = c.ids;
    if (k > 0) {
      EXPECT_GT(sched.spec_drafted(), 0);
    }
  }
  EXPECT_EQ(greedy[0], greedy[1]);  // drafts are checked against the mask: speculation changes nothing
}

}  // namespace
}  // namespace dsv3
