// The OpenAI-compatible endpoints against an in-process server: response shapes (plain and
// streamed), the other endpoints, bad input, body limit and the API key.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "server/reasoning.h"
#include "server_test_env.h"

namespace dsv3::test {
namespace {

TEST(ServerApi, ChatCompletionHasOpenAIShape) {
  TestServer s(small_options());
  const HttpResult r = post(s, "/v1/chat/completions", chat_body("Hello!", 8).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.content_type.find("application/json"), std::string::npos);
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_TRUE(j["created"].is_number_integer());
  EXPECT_EQ(j["model"], "tiny");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(j["choices"][0]["message"]["content"].is_string());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 2);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + 8);
}

TEST(ServerApi, StreamedChatIsServerSentEventsEndingInDone) {
  TestServer s(small_options());
  json body = chat_body("Hello!", 6, /*stream=*/true);
  body["stream_options"] = {{"include_usage", true}};
  const HttpResult r = post(s, "/v1/chat/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.content_type.find("text/event-stream"), std::string::npos);
  const auto events = sse_data(r.body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  const json first = json::parse(events[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["usage"].is_null());
  const json last_choice = json::parse(events[events.size() - 3]);
  EXPECT_EQ(last_choice["choices"][0]["finish_reason"], "length");
  const json usage = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 6);
  for (size_t i = 0; i + 1 < events.size(); ++i) EXPECT_EQ(json::parse(events[i])["id"], first["id"]);

  // The same request without streaming gives the same text (greedy).
  const json plain = json::parse(post(s, "/v1/chat/completions", chat_body("Hello!", 6).dump()).body);
  EXPECT_EQ(streamed_text(r.body), plain["choices"][0]["message"]["content"].get<std::string>());
}

TEST(ServerApi, ContentPartsSystemRoleAndMaxCompletionTokens) {
  TestServer s(small_options());
  json a = chat_body("Hello world", 5);
  a["messages"] = {{{"role", "developer"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hello world"}}};
  json b = a;
  b["messages"][1]["content"] = {{{"type", "text"}, {"text", "Hello "}}, {{"type", "text"}, {"text", "world"}}};
  b["messages"][0]["role"] = "system";
  b.erase("max_tokens");
  b["max_completion_tokens"] = 5;
  const json ja = json::parse(post(s, "/v1/chat/completions", a.dump()).body);
  const json jb = json::parse(post(s, "/v1/chat/completions", b.dump()).body);
  EXPECT_EQ(ja["choices"][0]["message"], jb["choices"][0]["message"]);
  EXPECT_EQ(ja["usage"]["prompt_tokens"], jb["usage"]["prompt_tokens"]);
  EXPECT_EQ(jb["usage"]["completion_tokens"], 5);
  // The same prompt again: all of it but the last token comes from the slot's cache.
  EXPECT_EQ(ja["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(jb["usage"]["prompt_tokens_details"]["cached_tokens"], jb["usage"]["prompt_tokens"].get<int>() - 1);
}

// logprobs as OpenAI shapes them: chat {"content": [{token, logprob, bytes, top_logprobs}]},
// completions {tokens, token_logprobs, top_logprobs, text_offset}; whole and streamed agree.
TEST(ServerApi, LogprobsChatAndCompletions) {
  TestServer s(small_options());
  json body = chat_body("Count with me", 6);
  body["logprobs"] = true;
  body["top_logprobs"] = 3;
  const json j = json::parse(post(s, "/v1/chat/completions", body.dump()).body);
  const json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 6u) << j.dump();
  for (const json& e : content) {
    EXPECT_LE(e["logprob"].get<double>(), 0.0);
    ASSERT_EQ(e["top_logprobs"].size(), 3u);
    // Greedy: the chosen token is the most likely one, and the alternatives come best first.
    EXPECT_EQ(e["top_logprobs"][0]["token"], e["token"]);
    EXPECT_FLOAT_EQ(e["top_logprobs"][0]["logprob"].get<float>(), e["logprob"].get<float>());
    EXPECT_GE(e["top_logprobs"][0]["logprob"].get<double>(), e["top_logprobs"][1]["logprob"].get<double>());
    EXPECT_GE(e["top_logprobs"][1]["logprob"].get<double>(), e["top_logprobs"][2]["logprob"].get<double>());
    double mass = 0;
    for (const json& t : e["top_logprobs"]) mass += std::exp(t["logprob"].get<double>());
    EXPECT_LE(mass, 1.0 + 1e-5);
    // "bytes" holds the exact bytes; "token" is them as text (a piece of a UTF-8 character
    // becomes U+FFFD there, as in OpenAI's API).
    std::string bytes;
    for (const json& b : e["bytes"]) bytes += char(b.get<int>());
    const std::string token = e["token"];
    if (token.find("\xEF\xBF\xBD") == std::string::npos) {
      EXPECT_EQ(bytes, token);
    }
    EXPECT_FALSE(bytes.empty());
  }
  // Streamed: the same entries, spread over the chunks.
  body["stream"] = true;
  json streamed = json::array();
  for (const std::string& ev : sse_data(post(s, "/v1/chat/completions", body.dump()).body)) {
    if (ev == "[DONE]") break;
    const json c = json::parse(ev);
    if (!c["choices"].empty() && c["choices"][0]["logprobs"].is_object())
      for (const json& e : c["choices"][0]["logprobs"]["content"]) streamed.push_back(e);
  }
  EXPECT_EQ(streamed, content);
  // Without logprobs the field is null.
  EXPECT_TRUE(json::parse(post(s, "/v1/chat/completions", chat_body("Count with me", 2).dump()).body)["choices"][0]
                  ["logprobs"].is_null());

  const json cj = json::parse(post(s, "/v1/completions", json{{"prompt", "Once upon a time"}, {"max_tokens", 5},
                                                                  {"temperature", 0}, {"ignore_eos", true},
                                                                  {"logprobs", 2}}.dump())
                                  .body);
  const json& lp = cj["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 5u) << cj.dump();
  ASSERT_EQ(lp["token_logprobs"].size(), 5u);
  ASSERT_EQ(lp["top_logprobs"].size(), 5u);
  int64_t offset = 0;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(lp["text_offset"][i], offset);
    offset += int64_t(lp["tokens"][i].get<std::string>().size());
    EXPECT_LE(lp["top_logprobs"][i].size(), 2u);
    EXPECT_TRUE(lp["top_logprobs"][i].contains(lp["tokens"][i].get<std::string>()));
  }
}

// logit_bias changes what is sampled, greedy included; the penalties are accepted (their
// effect is checked on hand-made logits in the sampler tests).
TEST(ServerApi, LogitBiasAndPenalties) {
  TestServer s(small_options());
  auto tokens = [&](json extra) {
    json b = {{"prompt", "Once upon a time"}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true},
              {"logprobs", 0}};
    if (extra.is_object()) b.update(extra);
    const HttpResult r = post(s, "/v1/completions", b.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body)["choices"][0]["logprobs"]["tokens"];
  };
  const json plain = tokens({});
  const json forced = tokens({{"logit_bias", {{"300", 100}}}});  // +100: greedy picks token 300 every time
  ASSERT_EQ(forced.size(), 6u);
  for (const json& t : forced) EXPECT_EQ(t, forced[0]);
  EXPECT_NE(forced, plain);
  EXPECT_EQ(tokens({{"frequency_penalty", 0.0}, {"presence_penalty", 0.0}}), plain);
  EXPECT_EQ(tokens({{"frequency_penalty", 1.5}, {"presence_penalty", -0.5}}).size(), 6u);
}

TEST(ServerApi, CompletionsPlainAndStreamed) {
  TestServer s(small_options());
  const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}};
  const HttpResult r = post(s, "/v1/completions", body.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  json sb = body;
  sb["stream"] = true;
  const HttpResult st = post(s, "/v1/completions", sb.dump());
  ASSERT_EQ(st.status, 200);
  EXPECT_EQ(sse_data(st.body).back(), "[DONE]");
  EXPECT_EQ(streamed_text(st.body), j["choices"][0]["text"].get<std::string>());
  // Default max_tokens is 16, as OpenAI's.
  const json d = json::parse(post(s, "/v1/completions", json{{"prompt", "x"}, {"ignore_eos", true}}.dump()).body);
  EXPECT_EQ(d["usage"]["completion_tokens"], 16);
}

TEST(ServerApi, StopStringsEndTheAnswer) {
  TestServer s(small_options());
  const json full = json::parse(post(s, "/v1/completions", json{{"prompt", "a b c"}, {"max_tokens", 12},
                                                                 {"temperature", 0}, {"ignore_eos", true}}.dump()).body);
  const std::string text = full["choices"][0]["text"];
  ASSERT_GE(text.size(), 4u);
  const std::string stop = text.substr(text.size() / 2, 2);
  const json cut = json::parse(post(s, "/v1/completions", json{{"prompt", "a b c"}, {"max_tokens", 12},
                                                                {"temperature", 0}, {"ignore_eos", true},
                                                                {"stop", {stop}}}.dump()).body);
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(cut["choices"][0]["text"], text.substr(0, text.find(stop)));
}

TEST(ServerApi, ModelsHealthMetricsAndChatPage) {
  TestServer s(small_options());
  const json models = json::parse(get(s, "/v1/models").body);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(json::parse(get(s, "/health").body)["status"], "ok");
  post(s, "/v1/chat/completions", chat_body("Hi", 3).dump());
  // The request is counted when its handler finishes, which may be just after the client has
  // read the answer: poll briefly rather than race it.
  HttpResult m = get(s, "/metrics");
  const std::string counted = "dsv3_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1";
  for (int i = 0; i < 250 && m.body.find(counted) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    m = get(s, "/metrics");
  }
  EXPECT_NE(m.content_type.find("text/plain"), std::string::npos);
  for (const char* name : {"dsv3_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1",
                           "dsv3_generation_tokens_total 3", "dsv3_requests_waiting 0", "dsv3_batch_size",
                           "dsv3_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1",
                           "dsv3_inter_token_latency_seconds_count 2"})
    EXPECT_NE(m.body.find(name), std::string::npos) << name << "\n" << m.body;
  const HttpResult page = get(s, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.content_type.find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("/v1/chat/completions"), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos);  // no external resources
  EXPECT_EQ(page.body.find("https://"), std::string::npos);
}

// Each bad request gets 400 and an OpenAI error object; the server keeps serving.
TEST(ServerApi, BadInputIsAnswered400) {
  TestServer s(small_options(2, 64));
  const json user = {{{"role", "user"}, {"content", "x"}}};
  std::string long_prompt;  // longer than the context of 64 tokens
  for (int i = 0; i < 100; ++i) long_prompt += "word" + std::to_string(i) + " ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/v1/chat/completions", "{not json"},
      {"/v1/chat/completions", "[1, 2]"},
      {"/v1/chat/completions", "{}"},
      {"/v1/chat/completions", json{{"messages", json::array()}}.dump()},
      {"/v1/chat/completions", json{{"messages", "hello"}}.dump()},
      {"/v1/chat/completions", json{{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", {{{"role", "user"}}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", 5}}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"max_tokens", 0}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"max_tokens", -3}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"max_tokens", 1000}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"max_tokens", "10"}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"temperature", "hot"}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"temperature", 9}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"n", 0}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"n", 129}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"stop", 7}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"stream", "yes"}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"stream_options", {{"include_usage", true}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"response_format", {{"type", "xml"}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"response_format", {{"type", "json_schema"}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", long_prompt}}}}}.dump()},
      {"/v1/chat/completions", std::string("{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}")},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": "\ud800"}]})"},
      {"/v1/completions", json{{"max_tokens", 3}}.dump()},
      {"/v1/completions", json{{"prompt", 42}}.dump()},
      {"/v1/completions", json{{"prompt", "x"}, {"echo", true}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"top_logprobs", 2}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"logprobs", true}, {"top_logprobs", 21}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"logprobs", 3}}.dump()},
      {"/v1/completions", json{{"prompt", "x"}, {"logprobs", 50}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"presence_penalty", 3}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"logit_bias", {{"abc", 1}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"logit_bias", {{"5", 200}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"logit_bias", {{"99999999", 1}}}}.dump()},
      {"/v1/chat/completions", json{{"messages", user}, {"logit_bias", {5, 1}}}.dump()},
  };
  for (const auto& [path, body] : cases) {
    const HttpResult r = post(s, path, body);
    EXPECT_EQ(r.status, 400) << body << "\n" << r.body;
    json j;
    ASSERT_NO_THROW(j = json::parse(r.body)) << r.body;
    ASSERT_TRUE(j.contains("error")) << r.body;
    for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(j["error"].contains(k)) << k << r.body;
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  }
  EXPECT_EQ(post(s, "/v1/chat/completions", chat_body("still there?", 2).dump()).status, 200);
  EXPECT_EQ(get(s, "/nope").status, 404);
  EXPECT_TRUE(json::parse(get(s, "/nope").body).contains("error"));
}

TEST(ServerApi, BodyLargerThanTheLimitIs413) {
  server::ServerOptions o = small_options();
  o.max_body_bytes = 4096;
  TestServer s(o);
  const HttpResult r = post(s, "/v1/chat/completions", chat_body(std::string(8000, 'a'), 2).dump());
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(json::parse(r.body).contains("error")) << r.body;
  EXPECT_EQ(post(s, "/v1/chat/completions", chat_body("small", 2).dump()).status, 200);
}

TEST(ServerApi, ApiKeyIsRequiredEverywhereButHealth) {
  server::ServerOptions o = small_options();
  o.api_key = "sk-test-123";
  TestServer s(o);
  const httplib::Headers good = {{"Authorization", "Bearer sk-test-123"}};
  for (const httplib::Headers& bad : std::vector<httplib::Headers>{
           {}, {{"Authorization", "Bearer sk-test-124"}}, {{"Authorization", "Bearer sk-test-12"}},
           {{"Authorization", "sk-test-123"}}}) {
    const HttpResult r = post(s, "/v1/chat/completions", chat_body("hi", 2).dump(), bad);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(json::parse(r.body)["error"]["code"], "invalid_api_key");
    EXPECT_EQ(get(s, "/v1/models", bad).status, 401);
    EXPECT_EQ(get(s, "/metrics", bad).status, 401);
  }
  EXPECT_EQ(post(s, "/v1/chat/completions", chat_body("hi", 2).dump(), good).status, 200);
  EXPECT_EQ(get(s, "/v1/models", good).status, 200);
  EXPECT_EQ(get(s, "/health").status, 200);
  EXPECT_TRUE(server::constant_time_equal("abc", "abc"));
  EXPECT_FALSE(server::constant_time_equal("abd", "abc"));
  EXPECT_FALSE(server::constant_time_equal("abcd", "abc"));
  EXPECT_FALSE(server::constant_time_equal("", "abc"));
}

// Reasoning text between <think> and </think> becomes reasoning_content, whatever the pieces.
TEST(ServerApi, ReasoningSplitter) {
  const std::string text = "<think>\nLet me see. 1 < 2.</think>\n\nThe answer is 3.";
  for (size_t piece : {1, 2, 3, 7, 100}) {
    server::ReasoningSplitter sp(false);
    std::string reasoning, content;
    for (size_t i = 0; i < text.size(); i += piece) {
      auto p = sp.push(text.substr(i, piece));
      reasoning += p.reasoning;
      content += p.content;
    }
    auto p = sp.flush();
    EXPECT_EQ(reasoning + p.reasoning, "Let me see. 1 < 2.") << piece;
    EXPECT_EQ(content + p.content, "The answer is 3.") << piece;
    EXPECT_TRUE(sp.seen_reasoning());
  }
  server::ReasoningSplitter opened(true);  // R1 template: the prompt opened <think>
  auto a = opened.push("hmm</thi");
  auto b = opened.push("nk>ok");
  EXPECT_EQ(a.reasoning + b.reasoning, "hmm");
  EXPECT_EQ(a.content + b.content, "ok");
  server::ReasoningSplitter plain(false);
  auto c = plain.push("<thin");
  auto d = plain.push("g> is not a tag");
  EXPECT_EQ(c.content + d.content + plain.flush().content, "<thing> is not a tag");
  EXPECT_FALSE(plain.seen_reasoning());
}

}  // namespace
}  // namespace dsv3::test

namespace dsv3::test {
namespace {

TEST(ServerApi, TokenizeAndDetokenize) {
  TestServer s(small_options(2, 256));
  const Tokenizer& tok = tiny_model().tokenizer;
  const json t = json::parse(post(s, "/tokenize", json{{"prompt", "Hello world"}}.dump()).body);
  EXPECT_EQ(t["tokens"].get<std::vector<int32_t>>(), tok.encode("Hello world", true));
  EXPECT_EQ(t["count"], t["tokens"].size());
  EXPECT_EQ(t["max_model_len"], 256);
  const json raw = json::parse(
      post(s, "/tokenize", json{{"prompt", "Hello world"}, {"add_special_tokens", false}}.dump()).body);
  EXPECT_EQ(raw["tokens"].get<std::vector<int32_t>>(), tok.encode("Hello world", false));
  // Messages: the tokens the same chat request is prefilled with.
  const json chat = chat_body("Hi there", 2);
  const json tm = json::parse(post(s, "/tokenize", chat.dump()).body);
  const json answer = json::parse(post(s, "/v1/chat/completions", chat.dump()).body);
  EXPECT_EQ(tm["count"], answer["usage"]["prompt_tokens"]);
  const json d = json::parse(post(s, "/detokenize", json{{"tokens", t["tokens"]}}.dump()).body);
  EXPECT_EQ(d["prompt"], tok.decode(t["tokens"].get<std::vector<int32_t>>()));
  EXPECT_NE(d["prompt"].get<std::string>().find("Hello world"), std::string::npos);
  for (const auto& [path, body] : std::vector<std::pair<std::string, json>>{
           {"/tokenize", json::object()}, {"/tokenize", {{"prompt", 5}}}, {"/detokenize", {{"tokens", "abc"}}},
           {"/detokenize", {{"tokens", {1, -2}}}}, {"/detokenize", {{"tokens", json::array({999999999})}}}}) {
    const HttpResult r = post(s, path, body.dump());
    EXPECT_EQ(r.status, 400) << body << r.body;
    EXPECT_TRUE(json::parse(r.body).contains("error")) << r.body;
  }
}

}  // namespace
}  // namespace dsv3::test
