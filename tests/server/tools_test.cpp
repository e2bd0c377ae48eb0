// Tool calling at the API: requests with tools (prompt block, tool_choice, bad definitions,
// tool_call_id, V3.1 with thinking), and the answer assembly (ToolCallStream) on real token ids
// and the stream decoder's texts, the pieces the scheduler hands the relay.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "server/tool_stream.h"
#include "tests/server/server_test_env.h"
#include "tokenizer/stream_decoder.h"

namespace dsv3::test {
namespace {

const json kWeather = {{"type", "function"},
                       {"function",
                        {{"name", "get_weather"},
                         {"description", "The weather in a city"},
                         {"parameters",
                          {{"type", "object"},
                           {"properties", {{"city", {{"type", "string"}}}}},
                           {"required", json::array({"city"})}}}}}};

json tool_body(int max_tokens) {
  json b = chat_body("What is the weather in Paris?", max_tokens);
  b["tools"] = json::array({kWeather});
  return b;
}

const ChatTemplate& v31_template() {
  static const ChatTemplate t = [] {
    std::ifstream in(fs::path(DSV3_TESTDATA_DIR) / "templates" / "deepseek-v3.1.jinja");
    std::stringstream ss;
    ss << in.rdbuf();
    return ChatTemplate::from_template(ss.str(), "<｜begin▁of▁sentence｜>");
  }();
  return t;
}

int prompt_tokens(const HttpResult& r) {
  EXPECT_EQ(r.status, 200) << r.body;
  return json::parse(r.body)["usage"]["prompt_tokens"].get<int>();
}

TEST(ServerTools, ToolsGoIntoThePromptUnlessToolChoiceIsNone) {
  TestServer s(small_options(2, 1024));
  const Tokenizer& tok = tiny_model().tokenizer;
  const int plain = prompt_tokens(post(s, "/v1/chat/completions", chat_body("What is the weather in Paris?", 1).dump()));
  const int with_tools = prompt_tokens(post(s, "/v1/chat/completions", tool_body(1).dump()));
  // The prompt is the one of a system message holding the "## Tools" block.
  const std::string block = tool_system_prompt(ChatTemplateKind::kDeepSeekV3,
                                               tool_definitions_from_json(nlohmann::ordered_json::array({kWeather})));
  EXPECT_GT(with_tools - plain, int(tok.encode(block, false).size()) / 2);
  json as_system = chat_body("What is the weather in Paris?", 1);
  as_system["messages"].insert(as_system["messages"].begin(), json{{"role", "system"}, {"content", block}});
  EXPECT_EQ(with_tools, prompt_tokens(post(s, "/v1/chat/completions", as_system.dump())));
  json none = tool_body(1);
  none["tool_choice"] = "none";
  EXPECT_EQ(prompt_tokens(post(s, "/v1/chat/completions", none.dump())), plain);
  for (const json& choice : {json("auto"), json("required"),
                             json{{"type", "function"}, {"function", {{"name", "get_weather"}}}}}) {
    json b = tool_body(1);
    b["tool_choice"] = choice;
    b["parallel_tool_calls"] = false;
    EXPECT_EQ(prompt_tokens(post(s, "/v1/chat/completions", b.dump())), with_tools) << choice;
  }
  // An existing system message gets the block after a blank line.
  json sys = tool_body(1);
  sys["messages"].insert(sys["messages"].begin(), json{{"role", "system"}, {"content", "Be brief."}});
  json sys_plain = chat_body("What is the weather in Paris?", 1);
  sys_plain["messages"] = sys["messages"];
  sys_plain["messages"][0]["content"] = "Be brief.\n\n" + block;
  EXPECT_EQ(prompt_tokens(post(s, "/v1/chat/completions", sys.dump())),
            prompt_tokens(post(s, "/v1/chat/completions", sys_plain.dump())));
}

TEST(ServerTools, MarkerTokensNeverLeakIntoContent) {
  // logit_bias makes the random model write <｜tool▁calls▁begin｜> at every step. Without tools
  // that is text (the markers are not special tokens); with tools it is markup, and no call
  // follows it, so the answer is empty and ends on the length limit.
  TestServer s(small_options(2, 1024));
  const int32_t begin = *tiny_model().tokenizer.token_to_id("<｜tool▁calls▁begin｜>");
  for (const bool stream : {false, true}) {
    json b = tool_body(3);
    b["stream"] = stream;
    b["logit_bias"] = {{std::to_string(begin), 100}};
    const HttpResult r = post(s, "/v1/chat/completions", b.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    if (stream) {
      EXPECT_EQ(streamed_text(r.body), "");
      EXPECT_EQ(r.body.find("tool_calls"), std::string::npos) << r.body;
    } else {
      const json msg = json::parse(r.body)["choices"][0]["message"];
      EXPECT_EQ(msg["content"], "") << msg;
      EXPECT_FALSE(msg.contains("tool_calls"));
      EXPECT_EQ(json::parse(r.body)["choices"][0]["finish_reason"], "length");
    }
    b.erase("tools");
    const HttpResult t = post(s, "/v1/chat/completions", b.dump());
    const std::string text = stream ? streamed_text(t.body) : json::parse(t.body)["choices"][0]["message"]["content"].get<std::string>();
    EXPECT_EQ(text, "<｜tool▁calls▁begin｜><｜tool▁calls▁begin｜><｜tool▁calls▁begin｜>");
  }
}

TEST(ServerTools, BadToolRequestsAre400NamingTheField) {
  TestServer s(small_options(2, 1024));
  const json call = {{"id", "call_1"}, {"type", "function"},
                     {"function", {{"name", "get_weather"}, {"arguments", "{\"city\": \"Paris\"}"}}}};
  const json history = {{{"role", "user"}, {"content", "Weather?"}},
                        {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array({call})}},
                        {{"role", "tool"}, {"tool_call_id", "call_2"}, {"content", "sunny"}}};
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"tools", "get_weather"}}, "tools"},
      {{{"tools", {{{"type", "function"}}}}}, "tools[0].function"},
      {{{"tools", {{{"type", "retrieval"}, {"function", {{"name", "f"}}}}}}}, "tools[0].type"},
      {{{"tools", {{{"type", "function"}, {"function", {{"name", "bad name!"}}}}}}}, "bad name!"},
      {{{"tools", {kWeather, kWeather}}}, "declared twice"},
      {{{"tools", {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", "{}"}}}}}}}, "parameters"},
      {{{"tools", json::array({kWeather})}, {"tool_choice", "always"}}, "tool_choice"},
      {{{"tools", json::array({kWeather})}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "other"}}}}}}, "other"},
      {{{"tool_choice", "required"}}, "tool_choice"},
      {{{"tools", json::array({kWeather})}, {"parallel_tool_calls", "yes"}}, "parallel_tool_calls"},
      {{{"tools", json::array({kWeather})}, {"messages", history}}, "call_2"},
  };
  for (const auto& [extra, needle] : cases) {
    json b = chat_body("Weather?", 2);
    b.update(extra);
    const HttpResult r = post(s, "/v1/chat/completions", b.dump());
    EXPECT_EQ(r.status, 400) << extra << "\n" << r.body;
    EXPECT_NE(r.body.find(needle), std::string::npos) << r.body;
  }
  // The same history answering call_1 is fine, with or without tools.
  json ok = chat_body("", 2);
  ok["messages"] = history;
  ok["messages"][2]["tool_call_id"] = "call_1";
  EXPECT_EQ(post(s, "/v1/chat/completions", ok.dump()).status, 200);
  ok["tools"] = json::array({kWeather});
  EXPECT_EQ(post(s, "/v1/chat/completions", ok.dump()).status, 200);
}

TEST(ServerTools, V31RefusesToolsWithThinkingOn) {
  TestServer s(small_options(2, 1024), &v31_template());
  json b = tool_body(2);
  b["chat_template_kwargs"] = {{"thinking", true}};
  const HttpResult r = post(s, "/v1/chat/completions", b.dump());
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("non-thinking mode"), std::string::npos) << r.body;
  b["tool_choice"] = "none";  // no tools in play: thinking is fine
  EXPECT_EQ(post(s, "/v1/chat/completions", b.dump()).status, 200);
  b.erase("tool_choice");
  b["chat_template_kwargs"] = {{"thinking", false}};
  EXPECT_EQ(post(s, "/v1/chat/completions", b.dump()).status, 200);
}

// tool_choice "required" / a named function: the random-weight model calls the tool, in the
// format of either template, with arguments of the tool's schema, whole and streamed.
TEST(ServerTools, ForcedCallsFollowTheSchemaInBothFormats) {
  const json lookup = json::parse(R"({"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"word": {"type": "string", "minLength": 1, "maxLength": 6},
    "n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["word", "n"], "additionalProperties": false}}})");
  auto check_args = [](const std::string& args) {
    json a;
    ASSERT_NO_THROW(a = json::parse(args)) << args;
    ASSERT_TRUE(a.is_object() && a.size() == 2) << args;
    EXPECT_TRUE(a["word"].is_string() && a["n"].is_number_integer() && a["n"] >= 0 && a["n"] <= 9) << args;
  };
  for (const ChatTemplate* tmpl : {static_cast<const ChatTemplate*>(nullptr), &v31_template()}) {
    TestServer s(small_options(2, 1024), tmpl);
    json b = tool_body(120);
    b["tools"] = json::array({lookup});  // bounded arguments (get_weather's city is not)
    b["parallel_tool_calls"] = false;
    b["temperature"] = 1;
    b["seed"] = 5;
    b["tool_choice"] = tmpl ? json("required") : json{{"type", "function"}, {"function", {{"name", "lookup"}}}};
    const HttpResult r = post(s, "/v1/chat/completions", b.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json c = json::parse(r.body)["choices"][0];
    EXPECT_EQ(c["finish_reason"], "tool_calls") << r.body;
    EXPECT_TRUE(c["message"]["content"].is_null()) << r.body;
    ASSERT_EQ(c["message"]["tool_calls"].size(), 1u) << r.body;
    const json call = c["message"]["tool_calls"][0]["function"];
    EXPECT_EQ(call["name"], "lookup");
    check_args(call["arguments"].get<std::string>());
    b["stream"] = true;
    b["tool_choice"] = json{{"type", "function"}, {"function", {{"name", "lookup"}}}};
    const HttpResult st = post(s, "/v1/chat/completions", b.dump());
    std::string args, finish;
    for (const std::string& d : sse_data(st.body)) {
      if (d == "[DONE]") continue;
      const json ch = json::parse(d)["choices"][0];
      EXPECT_FALSE(ch["delta"].contains("content") && ch["delta"]["content"].is_string() &&
                   !ch["delta"]["content"].get<std::string>().empty()) << d;
      for (const json& t : ch["delta"].value("tool_calls", json::array())) args += t["function"]["arguments"].get<std::string>();
      if (ch["finish_reason"].is_string()) finish = ch["finish_reason"];
    }
    EXPECT_EQ(finish, "tool_calls") << st.body;
    check_args(args);
  }
}

TEST(ServerTools, ForcedCallsWithASchemaOutsideTheSubsetAre400) {
  TestServer s(small_options(1, 512));
  json b = tool_body(4);
  b["tools"][0]["function"]["parameters"]["properties"]["city"]["pattern"] = "^[A-Z]";
  EXPECT_EQ(post(s, "/v1/chat/completions", b.dump()).status, 200);  // "auto": only shown to the model
  b["tool_choice"] = "required";
  const HttpResult r = post(s, "/v1/chat/completions", b.dump());
  ASSERT_EQ(r.status, 400) << r.body;
  const json e = json::parse(r.body)["error"];
  EXPECT_EQ(e["code"], "unsupported_schema");
  EXPECT_EQ(e["param"], "tools[0].function.parameters/properties/city/pattern");
  EXPECT_NE(e["message"].get<std::string>().find("'pattern'"), std::string::npos) << r.body;
}

// --- ToolCallStream on real token ids ------------------------------------------------------

struct Assembled {
  std::string content;
  json streamed = json::array();  // calls rebuilt from the deltas
  json final_calls;
};

// Tokenizes `answer`, decodes it token by token as the scheduler does (skip_special on), and
// feeds the pieces to a ToolCallStream in random steps.
Assembled assemble(ChatTemplateKind kind, const std::string& answer, std::mt19937& rng,
                   std::vector<std::string> stops = {}, bool parallel = true) {
  const Tokenizer& tok = tiny_model().tokenizer;
  server::ToolTask task;
  task.tools = {ToolDefinition{"f", std::nullopt, "{}"}};
  task.choice = server::ToolChoice::kAuto;
  task.parallel = parallel;
  task.syntax = tool_call_syntax(kind);
  task.ids = *tool_call_tokens(task.syntax, tok);
  server::ToolCallStream st(task, std::move(stops));
  StreamDecoder dec(tok, /*skip_special=*/true);
  Assembled a;
  auto take = [&](server::ToolCallStream::Delta d) {
    a.content += d.content;
    for (const json& c : d.tool_calls) {
      const size_t i = c["index"].get<size_t>();
      if (c.contains("id")) {
        EXPECT_EQ(i, a.streamed.size());
        EXPECT_EQ(c["type"], "function");
        EXPECT_EQ(c["function"]["arguments"], "");
        EXPECT_EQ(c["id"].get<std::string>().rfind("call_", 0), 0u);
        a.streamed.push_back({{"id", c["id"]}, {"type", "function"},
                              {"function", {{"name", c["function"]["name"]}, {"arguments", ""}}}});
      } else {
        EXPECT_EQ(c.size(), 2u) << c;  // index and function.arguments only
        EXPECT_EQ(c["function"].size(), 1u) << c;
        ASSERT_LT(i, a.streamed.size());
        a.streamed[i]["function"]["arguments"] =
            a.streamed[i]["function"]["arguments"].get<std::string>() + c["function"]["arguments"].get<std::string>();
      }
    }
  };
  std::vector<TokenPiece> step;
  for (const int32_t id : tok.encode(answer, false)) {
    step.push_back({id, dec.put(id)});
    if (rng() % 3 == 0) take(st.push(std::exchange(step, {})));
  }
  if (std::string rest = dec.flush(); !rest.empty()) step.push_back({-1, rest});
  take(st.push(step));
  take(st.finish());
  a.final_calls = st.tool_calls();
  return a;
}

TEST(ServerToolStream, DeltasJoinToTheCallsOverRandomStepsInBothFormats) {
  std::mt19937 rng(5);
  const std::string v31 =
      "Checking both. <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}"
      "<｜tool▁call▁end｜><｜tool▁call▁begin｜>add<｜tool▁sep｜>{\"a\": 1, \"b\": {\"c\": [2]}}<｜tool▁call▁end｜>"
      "<｜tool▁calls▁end｜>";
  const std::string v3 =
      "Checking both. <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
      "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n```json\n"
      "{\"a\": 1, \"b\": {\"c\": [2]}}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  for (const auto& [kind, text] : {std::pair{ChatTemplateKind::kDeepSeekV31, v31}, std::pair{ChatTemplateKind::kDeepSeekV3, v3}}) {
    for (int trial = 0; trial < 50; ++trial) {
      const Assembled a = assemble(kind, text, rng);
      EXPECT_EQ(a.content, "Checking both. ");
      ASSERT_EQ(a.final_calls.size(), 2u) << a.final_calls;
      EXPECT_EQ(a.final_calls[0]["function"]["name"], "get_weather");
      EXPECT_EQ(a.final_calls[0]["function"]["arguments"], "{\"city\": \"Paris\"}");
      EXPECT_EQ(a.final_calls[1]["function"]["name"], "add");
      EXPECT_EQ(a.final_calls[1]["function"]["arguments"], "{\"a\": 1, \"b\": {\"c\": [2]}}");
      EXPECT_EQ(a.streamed, a.final_calls);
      EXPECT_NE(a.final_calls[0]["id"], a.final_calls[1]["id"]);
      if (HasFailure()) return;
    }
  }
}

TEST(ServerToolStream, StopStringsCutContentAndParallelFalseKeepsTheFirstCall) {
  std::mt19937 rng(9);
  const std::string text =
      "Hello END more<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>a<｜tool▁sep｜>{\"END\": 1}<｜tool▁call▁end｜>"
      "<｜tool▁call▁begin｜>b<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  const Assembled cut = assemble(ChatTemplateKind::kDeepSeekV31, text, rng, {"END"});
  EXPECT_EQ(cut.content, "Hello ");
  ASSERT_EQ(cut.final_calls.size(), 2u);
  EXPECT_EQ(cut.final_calls[0]["function"]["arguments"], "{\"END\": 1}");  // stop strings match content only
  const Assembled one = assemble(ChatTemplateKind::kDeepSeekV31, text, rng, {}, /*parallel=*/false);
  ASSERT_EQ(one.final_calls.size(), 1u);
  EXPECT_EQ(one.final_calls[0]["function"]["name"], "a");
  EXPECT_EQ(one.streamed, one.final_calls);
}

TEST(ServerToolStream, ResponseCarriesToolCallsWithNullContent) {
  const server::ResponseMeta m{"chatcmpl-x", 0, "tiny", true};
  const json calls = {{{"id", "call_1"}, {"type", "function"}, {"function", {{"name", "f"}, {"arguments", "{}"}}}}};
  const json r = server::completion_response(m, "", std::nullopt, "tool_calls", server::usage_json(1, 2), calls);
  EXPECT_TRUE(r["choices"][0]["message"]["content"].is_null());
  EXPECT_EQ(r["choices"][0]["message"]["tool_calls"], calls);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "tool_calls");
  const json t = server::completion_response(m, "text", std::nullopt, "tool_calls", server::usage_json(1, 2), calls);
  EXPECT_EQ(t["choices"][0]["message"]["content"], "text");
  const json plain = server::completion_response(m, "", std::nullopt, "stop", server::usage_json(1, 2));
  EXPECT_EQ(plain["choices"][0]["message"]["content"], "");
  EXPECT_FALSE(plain["choices"][0]["message"].contains("tool_calls"));
}

}  // namespace
}  // namespace dsv3::test
