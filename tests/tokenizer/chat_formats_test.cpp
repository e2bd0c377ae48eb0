// The chat-template families beyond V3's: conformance cases rendered by Jinja with Hugging
// Face's settings (testdata/templates), recognition from the template text, and the `tojson`
// writer the V3.1 template needs.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "test_support.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/py_json.h"
#include "tokenizer/tool_calls.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

fs::path templates_dir() { return fs::path(DSV3_TESTDATA_DIR) / "templates"; }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << p;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string v3_template() {
  const auto cfg = nlohmann::json::parse(read_file(test::real_tokenizer_dir() / "tokenizer_config.json"));
  return cfg["chat_template"].get<std::string>();
}

ChatTemplate by_name(const std::string& name) {
  const std::string bos = "<｜begin▁of▁sentence｜>";
  if (name == "deepseek-v3") return ChatTemplate::from_template(v3_template(), bos);
  return ChatTemplate::from_template(read_file(templates_dir() / (name + ".jinja")), bos);
}

// Every line of a cases file, rendered with the template it names, equals Jinja's text.
void expect_cases(const std::string& file, size_t at_least) {
  std::ifstream in(templates_dir() / file);
  ASSERT_TRUE(in) << file;
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const ojson c = ojson::parse(line);  // ordered: arguments keep their key order
    SCOPED_TRACE(file + " line " + std::to_string(n + 1));
    ChatTemplateArgs args;
    args.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    args.thinking = c.value("thinking", false);
    const ChatTemplate t = by_name(c["template"].get<std::string>());
    EXPECT_EQ(t.render(chat_messages_from_json(c["messages"]), args), c["rendered"].get<std::string>());
    ++n;
  }
  EXPECT_GE(n, at_least);
}

TEST(ChatFormats, SharedConformanceCases) { expect_cases("cases.jsonl", 24); }
TEST(ChatFormats, V3_0324CasesFromItsPublishedTemplate) { expect_cases("cases-0324.jsonl", 14); }

TEST(ChatFormats, RecognisedFromTheTemplateText) {
  EXPECT_EQ(by_name("deepseek-v3").kind(), ChatTemplateKind::kDeepSeekV3);
  EXPECT_EQ(by_name("deepseek-v3.1").kind(), ChatTemplateKind::kDeepSeekV31);
  EXPECT_EQ(by_name("deepseek-v3.1").name(), "DeepSeek-V3.1");
  const std::string v3_0324 = read_file(templates_dir() / "deepseek-v3-0324.jinja");
  EXPECT_EQ(by_name("deepseek-v3-0324").kind(), ChatTemplateKind::kDeepSeekV3_0324);
  // Line breaks and spacing do not matter (tokenizer_config.json copies differ in them).
  std::string spaced = read_file(templates_dir() / "deepseek-v3.1.jinja");
  for (size_t at = 0; (at = spaced.find("%}", at)) != std::string::npos; at += 3) spaced.insert(at + 2, "\n");
  EXPECT_EQ(ChatTemplate::from_template(spaced, "<s>").kind(), ChatTemplateKind::kDeepSeekV31);
  // R1-0528: V3-0324's with the assistant content cut after the last </think>.
  std::string r1 = v3_0324;
  const std::string from = "{% set content = message['content'] %}{{content + '<｜end▁of▁sentence｜>'}}";
  ASSERT_NE(r1.find(from), std::string::npos);
  r1.replace(r1.find(from), from.size(),
             "{% set content = message['content'] %}{% if '</think>' in content %}{% set content = "
             "content.split('</think>')[-1] %}{% endif %}{{content + '<｜end▁of▁sentence｜>'}}");
  const ChatTemplate t = ChatTemplate::from_template(r1, "<s>");
  EXPECT_EQ(t.kind(), ChatTemplateKind::kDeepSeekR1_0528);
  const auto msgs = chat_messages_from_json(nlohmann::json::parse(
      R"([{"role":"user","content":"Q"},{"role":"assistant","content":"<think>a</think>b</think>c"},{"role":"user","content":"R"}])"));
  EXPECT_EQ(t.render(msgs, true), "<s><｜User｜>Q<｜Assistant｜>c<｜end▁of▁sentence｜><｜User｜>R<｜Assistant｜>");
}

TEST(ChatFormats, OtherTemplatesAreRefusedWithTheReason) {
  auto refused = [](const std::string& jinja, const std::string& why) {
    try {
      ChatTemplate::from_template(jinja, "<s>");
      ADD_FAILURE() << "accepted: " << jinja.substr(0, 60);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  refused("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}",
          "not a DeepSeek chat template");
  std::string v3 = v3_template();
  const std::string gen = "{{'<｜Assistant｜>'}}{% endif %}";
  refused(v3.replace(v3.find(gen), gen.size(), "{{'<｜Assistant｜>'}}{% if enable_thinking %}<think></think>{% endif %}{% endif %}"),
          "thinking switch");
  std::string no_calls = v3_template();
  const std::string fence = "'```json'";
  for (size_t at; (at = no_calls.find(fence)) != std::string::npos;) no_calls.replace(at, fence.size(), "''");
  refused(no_calls, "tool-call format");
}

TEST(ChatFormats, ThinkingKwargsAndPrompts) {
  EXPECT_TRUE(thinking_from_kwargs(nlohmann::json::parse(R"({"thinking": true})")));
  EXPECT_FALSE(thinking_from_kwargs(nlohmann::json::parse(R"({"thinking": false, "enable_thinking": true})")));
  EXPECT_TRUE(thinking_from_kwargs(nlohmann::json::parse(R"({"enable_thinking": 1})")));
  EXPECT_FALSE(thinking_from_kwargs(nlohmann::json::parse(R"({})")));
  EXPECT_FALSE(thinking_from_kwargs(nlohmann::json(nullptr)));
  EXPECT_THROW(thinking_from_kwargs(nlohmann::json::parse("[true]")), Error);
  const ChatTemplate v31 = by_name("deepseek-v3.1");
  const auto msgs = chat_messages_from_json(nlohmann::json::parse(R"([{"role":"user","content":"Q"}])"));
  EXPECT_TRUE(prompt_opens_think(v31.render(msgs, ChatTemplateArgs{true, true})));
  EXPECT_FALSE(prompt_opens_think(v31.render(msgs, ChatTemplateArgs{true, false})));
  // A prefix-completion turn with thinking on opens <think> and is then closed by the template.
  const auto prefixed = chat_messages_from_json(
      nlohmann::json::parse(R"([{"role":"user","content":"Q"},{"role":"assistant","content":"Let","prefix":true}])"));
  EXPECT_EQ(v31.render(prefixed, ChatTemplateArgs{false, true}),
            "<｜begin▁of▁sentence｜><｜User｜>Q<｜Assistant｜><think>Let<｜end▁of▁sentence｜>");
}

TEST(ChatFormats, V31ParsesOpenAIStringArgumentsAndRefusesBadJson) {
  const ChatTemplate v31 = by_name("deepseek-v3.1");
  const auto msgs = chat_messages_from_json(nlohmann::json::parse(R"([{"role":"user","content":"Q"},
      {"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{\"b\":1,\"a\":[2.50,{}]}"}}]}])"));
  EXPECT_EQ(v31.render(msgs, false),
            "<｜begin▁of▁sentence｜><｜User｜>Q<｜Assistant｜><think></think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f"
            "<｜tool▁sep｜>{\"b\": 1, \"a\": [2.5, {}]}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
  const auto bad = chat_messages_from_json(nlohmann::json::parse(
      R"([{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":"{oops"}}]}])"));
  EXPECT_THROW(v31.render(bad, false), Error);
}

TEST(PythonJsonDumps, MatchesJsonDumpsWithEnsureAsciiFalse) {
  // Expected texts are CPython 3.11's json.dumps(json.loads(text), ensure_ascii=False).
  const std::pair<const char*, const char*> cases[] = {
      {R"({"b": 1, "a": [true, false, null]})", R"({"b": 1, "a": [true, false, null]})"},
      {R"({"x":{},"y":[],"z":""})", R"({"x": {}, "y": [], "z": ""})"},
      {"[1.0, 100.0, 0.1, 1e15, 1e16, 1.5e300, 1e-4, 1e-5, -0.0, 2.5e-7, 123456789.125]",
       "[1.0, 100.0, 0.1, 1000000000000000.0, 1e+16, 1.5e+300, 0.0001, 1e-05, -0.0, 2.5e-07, 123456789.125]"},
      {"[-7, 18446744073709551615, -9223372036854775808]", "[-7, 18446744073709551615, -9223372036854775808]"},
      {R"(["東京", "a\"b\\c", "\n\r\t\b\f", "\u0001\u001f\u007f", "\u2028"])",
       "[\"東京\", \"a\\\"b\\\\c\", \"\\n\\r\\t\\b\\f\", \"\\u0001\\u001f\x7f\", \"\u2028\"]"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(python_json_dumps(ojson::parse(in)), want) << in;
}

TEST(ToolCallsSyntax, V31ToolPromptIsTheModelCardsText) {
  const auto tools = tool_definitions_from_json(ojson::parse(R"([{"type":"function","function":{"name":"get_weather",
      "description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
      {"type":"function","function":{"name":"now"}}])"));
  EXPECT_EQ(tool_system_prompt(ChatTemplateKind::kDeepSeekV31, tools),
            "## Tools\nYou have access to the following tools:\n\n"
            "### get_weather\nDescription: Weather of a city\n\nParameters: {\"type\": \"object\", \"properties\": "
            "{\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}\n\n"
            "### now\nDescription: \n\nParameters: {}\n\n"
            "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜>"
            "{additional_tool_calls}<｜tool▁calls▁end｜>\n\nWhere:\n"
            "- `tool_call_name` must be an exact match to one of the available tools\n"
            "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
            "- For multiple tool calls, chain them directly without separators or spaces");
  const std::string v3 = tool_system_prompt(ChatTemplateKind::kDeepSeekV3, tools);
  EXPECT_NE(v3.find("<｜tool▁call▁begin｜>function<｜tool▁sep｜>tool_call_name\n```json\ntool_call_arguments\n```"),
            std::string::npos);
}

TEST(ToolCallsSyntax, MalformedDefinitionsNameTheField) {
  const std::pair<const char*, const char*> bad[] = {
      {R"({"type":"function"})", "'tools' must be an array"},
      {R"([{"type":"retrieval","function":{"name":"f"}}])", "tools[0].type"},
      {R"([{"type":"function"}])", "tools[0].function must be"},
      {R"([{"type":"function","function":{"description":"x"}}])", "tools[0].function.name"},
      {R"([{"type":"function","function":{"name":"has space"}}])", "tools[0].function.name 'has space'"},
      {R"([{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}])", "tools[1].function.name 'f' is declared twice"},
      {R"([{"type":"function","function":{"name":"f","parameters":"{}"}}])", "tools[0].function.parameters"},
      {R"([{"type":"function","function":{"name":"f","description":7}}])", "tools[0].function.description"},
  };
  for (const auto& [tools, why] : bad) {
    try {
      tool_definitions_from_json(ojson::parse(tools));
      ADD_FAILURE() << "accepted " << tools;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  }
}

using ToolMarkers = test::RealTokenizerTest;
TEST_F(ToolMarkers, AreSingleTokens) {
  for (const auto kind : {ChatTemplateKind::kDeepSeekV3, ChatTemplateKind::kDeepSeekV31}) {
    const ToolCallSyntax s = tool_call_syntax(kind);
    const auto ids = tool_call_tokens(s, tok());
    ASSERT_TRUE(ids.has_value());
    EXPECT_EQ(tok().encode(s.calls_begin), std::vector<int32_t>{ids->calls_begin});
    EXPECT_EQ(tok().encode(s.call_end), std::vector<int32_t>{ids->call_end});
    EXPECT_EQ(tok().encode(s.sep), std::vector<int32_t>{ids->sep});
  }
}

}  // namespace
}  // namespace dsv3
