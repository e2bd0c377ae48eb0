// The incremental tool-call parser: every split of the same tokens into steps, and every way the
// decoder may hand out their text, gives byte-identical calls, and the streamed argument
// fragments joined equal the final arguments. Includes the cases that broke other servers.
#include "server/tool_parser.h"

#include <gtest/gtest.h>

#include <random>

namespace dsv3::server {
namespace {

// Marker ids as in DeepSeek's vocabulary; ordinary tokens get ids below them.
constexpr ToolCallTokens kIds{128806, 128808, 128814, 128809, 128807};
constexpr int32_t kText = 100;

// A generated answer as tokens: a marker id with no text, or an ordinary token with its text.
struct Token {
  int32_t id;
  std::string text;
};

struct Script {
  std::vector<Token> tokens;
  void marker(int32_t id) { tokens.push_back({id, ""}); }
  // `s` as ordinary tokens of 1 to 4 bytes (the split is drawn from `rng`).
  void text(const std::string& s, std::mt19937& rng) {
    for (size_t i = 0; i < s.size();) {
      const size_t n = std::min(s.size() - i, size_t(1 + rng() % 4));
      tokens.push_back({kText, s.substr(i, n)});
      i += n;
    }
  }
};

struct Expected {
  std::string content;
  std::vector<ParsedToolCall> calls;
};

// Writes `calls` in the given syntax after `content`, as the model would generate them.
Script generate(const ToolCallSyntax& syn, const Expected& e, std::mt19937& rng, bool close_all = true) {
  Script s;
  s.text(e.content, rng);
  s.marker(kIds.calls_begin);
  for (size_t i = 0; i < e.calls.size(); ++i) {
    if (i > 0) s.text(std::string(syn.call_separator), rng);
    s.marker(kIds.call_begin);
    if (syn.name_first) {
      s.text(e.calls[i].name, rng);
      s.marker(kIds.sep);
    } else {
      s.text(std::string(syn.type_prefix), rng);
      s.marker(kIds.sep);
      s.text(e.calls[i].name, rng);
    }
    s.text(std::string(syn.args_open) + e.calls[i].arguments + std::string(syn.args_close), rng);
    s.marker(kIds.call_end);
  }
  if (close_all) s.marker(kIds.calls_end);
  return s;
}

struct Result {
  std::string content;
  std::vector<ParsedToolCall> streamed;  // names from kCallStart, arguments joined from kArguments
  std::vector<ParsedToolCall> calls;     // parser.calls()
};

// Feeds `s` in random steps; each token's text may be delayed onto a later ordinary token (as a
// stream decoder holding an incomplete UTF-8 character does), never past a marker.
Result run(const ToolCallSyntax& syn, const Script& s, std::mt19937& rng) {
  ToolCallParser p(syn, kIds);
  std::vector<ToolCallEvent> events;
  std::vector<int32_t> ids;
  std::vector<std::string> texts;
  std::string delayed;
  auto flush_step = [&] {
    p.push(ids, texts, events);
    ids.clear();
    texts.clear();
  };
  for (const Token& t : s.tokens) {
    const bool is_marker = t.id != kText;
    ids.push_back(t.id);
    if (is_marker) {  // the delayed text comes out with the marker, ahead of it
      texts.push_back(delayed);
      delayed.clear();
    } else if (rng() % 3 == 0) {
      delayed += t.text;
      texts.push_back("");
    } else {
      texts.push_back(delayed + t.text);
      delayed.clear();
    }
    if (rng() % 3 == 0) flush_step();
  }
  if (!delayed.empty()) {
    ids.push_back(kText);
    texts.push_back(delayed);
  }
  flush_step();
  p.finish(events);
  Result r;
  for (const ToolCallEvent& e : events) {
    if (e.kind == ToolCallEvent::kContent) r.content += e.text;
    if (e.kind == ToolCallEvent::kCallStart) {
      EXPECT_EQ(e.index, int(r.streamed.size()));
      r.streamed.push_back({e.text, ""});
    }
    if (e.kind == ToolCallEvent::kArguments) {
      EXPECT_GE(e.index, 0);
      EXPECT_LT(e.index, int(r.streamed.size())) << "arguments before the call's name";
      EXPECT_FALSE(e.text.empty());
      if (e.index >= 0 && e.index < int(r.streamed.size())) r.streamed[size_t(e.index)].arguments += e.text;
    }
  }
  r.calls = p.calls();
  return r;
}

void expect_calls(const std::vector<ParsedToolCall>& got, const std::vector<ParsedToolCall>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].name, want[i].name) << "call " << i;
    EXPECT_EQ(got[i].arguments, want[i].arguments) << "call " << i;
  }
}

const std::vector<Expected>& answers() {
  static const std::vector<Expected> a = {
      {"", {{"get_weather", R"({"city": "Paris"})"}}},
      {"Let me check. ", {{"get_weather", R"({"city": "Rome", "unit": "F"})"}, {"get_weather", R"({"city": "Oslo"})"}}},
      // Arguments ending in a number or a nested object (partial-JSON parsers hold these back).
      {"", {{"add", R"({"a": 1, "b": 20})"}, {"f", R"({"x": {"y": [1, {"z": {}}]}})"}, {"n", "42"}}},
      // Text that looks like the fence or markers inside the arguments.
      {"```json\n", {{"code", "{\"src\": \"a\\n```\\nb\", \"t\": \"<｜tool▁call▁end｜>\"}"}}},
      {"only content, no calls", {}},
      {"", {{"a", "{}"}, {"b", "{}"}, {"c", "{}"}, {"d", "[]"}}},
  };
  return a;
}

class ToolParser : public ::testing::TestWithParam<ChatTemplateKind> {};

TEST_P(ToolParser, AnySplitGivesTheSameCallsAndStreamedArgumentsJoinToThem) {
  const ToolCallSyntax syn = tool_call_syntax(GetParam());
  std::mt19937 rng(7);
  for (const Expected& e : answers()) {
    for (int trial = 0; trial < 200; ++trial) {
      SCOPED_TRACE(e.content + " trial " + std::to_string(trial));
      Expected want = e;
      const Script s = generate(syn, e, rng);
      const Result r = run(syn, s, rng);
      EXPECT_EQ(r.content, e.content);
      expect_calls(r.calls, e.calls);
      expect_calls(r.streamed, e.calls);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST_P(ToolParser, BeginAndEndInOneStepLoseNoCallAndMergeNone) {
  // Every token of the answer in a single step (MTP speculation accepting a whole call at once).
  const ToolCallSyntax syn = tool_call_syntax(GetParam());
  std::mt19937 rng(11);
  const Expected e = answers()[2];
  const Script s = generate(syn, e, rng);
  ToolCallParser p(syn, kIds);
  std::vector<int32_t> ids;
  std::vector<std::string> texts;
  for (const Token& t : s.tokens) {
    ids.push_back(t.id);
    texts.push_back(t.text);
  }
  std::vector<ToolCallEvent> events;
  p.push(ids, texts, events);
  expect_calls(p.calls(), e.calls);  // complete before finish(): nothing held at the end
  p.finish(events);
  expect_calls(p.calls(), e.calls);
}

TEST_P(ToolParser, UnclosedCallsEndAtTheNextCallOrTheEnd) {
  const ToolCallSyntax syn = tool_call_syntax(GetParam());
  std::mt19937 rng(3);
  const Expected e = answers()[1];
  Script s = generate(syn, e, rng, /*close_all=*/false);
  // Drop the first call_end: the second call_begin closes it.
  for (auto it = s.tokens.begin(); it != s.tokens.end(); ++it)
    if (it->id == kIds.call_end) {
      s.tokens.erase(it);
      break;
    }
  const Result r = run(syn, s, rng);
  expect_calls(r.calls, e.calls);
}

INSTANTIATE_TEST_SUITE_P(Formats, ToolParser,
                         ::testing::Values(ChatTemplateKind::kDeepSeekV3, ChatTemplateKind::kDeepSeekV31),
                         [](const auto& info) {
                           return std::string(info.param == ChatTemplateKind::kDeepSeekV31 ? "V31" : "V3");
                         });

TEST(ToolParserV3, NameLineAndFenceVariants) {
  // The V3 fence may be missing; arguments then start right after the name's line.
  const ToolCallSyntax syn = tool_call_syntax(ChatTemplateKind::kDeepSeekV3);
  ToolCallParser p(syn, kIds);
  std::vector<ToolCallEvent> ev;
  for (const auto& [id, text] : std::vector<std::pair<int32_t, std::string>>{
           {kIds.calls_begin, ""}, {kIds.call_begin, ""}, {kText, "function"}, {kIds.sep, ""}, {kText, " f \n{\"a\":"},
           {kText, " 1}"}, {kIds.call_end, ""}, {kIds.calls_end, ""}, {kText, "after"}})
    p.push(id, text, ev);
  p.finish(ev);
  ASSERT_EQ(p.calls().size(), 1u);
  EXPECT_EQ(p.calls()[0].name, "f");
  EXPECT_EQ(p.calls()[0].arguments, "{\"a\": 1}");
  EXPECT_EQ(ev.back().kind, ToolCallEvent::kContent);
  EXPECT_EQ(ev.back().text, "after");
}

}  // namespace
}  // namespace dsv3::server
