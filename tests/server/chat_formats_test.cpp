// The server with DeepSeek-V3.1's chat template: thinking off by default, on per request
// through chat_template_kwargs or DeepSeek's API spelling, reasoning returned apart.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/server/server_test_env.h"

namespace dsv3::test {
namespace {

const ChatTemplate& v31_template() {
  static const ChatTemplate t = [] {
    std::ifstream in(fs::path(DSV3_TESTDATA_DIR) / "templates" / "deepseek-v3.1.jinja");
    std::stringstream ss;
    ss << in.rdbuf();
    return ChatTemplate::from_template(ss.str(), "<｜begin▁of▁sentence｜>");
  }();
  return t;
}

TEST(ServerChatFormats, V31ThinkingIsOffByDefaultAndOnPerRequest) {
  TestServer s(small_options(), &v31_template());
  auto ask = [&](const json& extra) {
    json body = chat_body("Hello!", 4);
    body.update(extra);
    const HttpResult r = post(s, "/v1/chat/completions", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  };
  const json off = ask(json::object());
  const json on = ask({{"chat_template_kwargs", {{"thinking", true}}}});
  const json api = ask({{"thinking", {{"type", "enabled"}}}});
  const json api_off = ask({{"thinking", {{"type", "disabled"}}}, {"chat_template_kwargs", {{"thinking", true}}}});
  // The prompt ends "<think>" instead of "<think></think>".
  EXPECT_LT(on["usage"]["prompt_tokens"].get<int>(), off["usage"]["prompt_tokens"].get<int>());
  EXPECT_EQ(api["usage"]["prompt_tokens"], on["usage"]["prompt_tokens"]);
  EXPECT_EQ(api_off["usage"]["prompt_tokens"], off["usage"]["prompt_tokens"]);
  // With thinking on the answer starts inside <think>: it comes back as reasoning_content.
  for (const json* j : {&on, &api}) {
    const json& msg = (*j)["choices"][0]["message"];
    ASSERT_TRUE(msg.contains("reasoning_content")) << msg;
    EXPECT_FALSE(msg["reasoning_content"].get<std::string>().empty()) << msg;
  }
  EXPECT_FALSE(off["choices"][0]["message"].contains("reasoning_content")) << off;

  for (const json& bad : {json{{"thinking", true}}, json{{"thinking", {{"type", "maybe"}}}},
                          json{{"chat_template_kwargs", "thinking"}}}) {
    json body = chat_body("Hello!", 4);
    body.update(bad);
    const HttpResult r = post(s, "/v1/chat/completions", body.dump());
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_NE(r.body.find(bad.begin().key()), std::string::npos) << r.body;
  }
}

// An agent's next turn resends the conversation. V3.1 replays an answer as "</think>" + its
// content, so with thinking on the new prompt parts from the cache at the "<think>" that opened
// the last answer: every token before it must come from the cache.
TEST(ServerChatFormats, V31AgentTurnsReuseTheCacheUpToTheLastAnswer) {
  TestServer s(small_options(1, 1024), &v31_template());
  for (const bool thinking : {false, true}) {
    SCOPED_TRACE(thinking ? "thinking" : "no thinking");
    json req = chat_body("Plan a trip to Rome.", 6);
    req["messages"].insert(req["messages"].begin(), json{{"role", "system"}, {"content", "You are an agent."}});
    req["chat_template_kwargs"] = {{"thinking", thinking}};
    req["ignore_eos"] = false;
    auto tokens = [&] {
      return json::parse(post(s, "/tokenize", req.dump()).body)["tokens"].get<std::vector<int32_t>>();
    };
    size_t reusable = 0;  // the prompt tokens the previous turn left in the cache
    for (int turn = 0; turn < 3; ++turn) {
      const std::vector<int32_t> prompt = tokens();
      const HttpResult r = post(s, "/v1/chat/completions", req.dump());
      ASSERT_EQ(r.status, 200) << r.body;
      const json answer = json::parse(r.body);
      EXPECT_EQ(answer["usage"]["prompt_tokens"].get<size_t>(), prompt.size());
      const size_t cached = answer["usage"]["prompt_tokens_details"]["cached_tokens"].get<size_t>();
      EXPECT_GE(cached, reusable) << answer["usage"];
      std::printf("[ measure  ] V3.1 %s turn %d: %zu prompt tokens, %zu cached\n", thinking ? "thinking" : "no-thinking",
                  turn, prompt.size(), cached);
      req["messages"].push_back({{"role", "assistant"}, {"content", answer["choices"][0]["message"]["content"]}});
      req["messages"].push_back({{"role", "user"}, {"content", "And then day " + std::to_string(turn + 2) + "?"}});
      const std::vector<int32_t> next = tokens();
      reusable = 0;
      while (reusable < std::min(prompt.size(), next.size()) && prompt[reusable] == next[reusable]) ++reusable;
      // The replayed answer parts from this turn's prompt at its "<think>" (thinking) or not at all.
      EXPECT_EQ(reusable, thinking ? prompt.size() - 1 : prompt.size());
    }
  }
}

}  // namespace
}  // namespace dsv3::test
