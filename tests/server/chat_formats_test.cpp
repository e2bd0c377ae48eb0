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

}  // namespace
}  // namespace dsv3::test
