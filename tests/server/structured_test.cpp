// response_format on the in-process server with the tiny random-weight model: answers are values
// of the schema (its sampled text is noise, so only the constraint shapes it), streamed or not,
// and schemas outside the subset are a 400 that names the keyword.
#include <gtest/gtest.h>

#include "server_test_env.h"

namespace dsv3::test {
namespace {

const json kSchema = json::parse(R"({"type":"object","properties":{
  "city":{"type":"string","minLength":1,"maxLength":8},
  "temp":{"type":"integer","minimum":-40,"maximum":50},
  "sky":{"enum":["clear","cloudy","rain"]}},
  "required":["city","temp","sky"],"additionalProperties":false})");

json schema_body(int seed, bool stream) {
  json b = {{"messages", {{{"role", "user"}, {"content", "Weather in Paris as JSON?"}}}},
            {"max_tokens", 200},
            {"temperature", 1},
            {"seed", seed},
            {"stream", stream},
            {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "weather"}, {"schema", kSchema}}}}}};
  return b;
}

void expect_weather(const std::string& text) {
  json j;
  ASSERT_NO_THROW(j = json::parse(text)) << text;
  ASSERT_TRUE(j.is_object()) << text;
  EXPECT_EQ(j.size(), 3u) << text;
  EXPECT_TRUE(j["city"].is_string()) << text;
  EXPECT_TRUE(j["temp"].is_number_integer() && j["temp"] >= -40 && j["temp"] <= 50) << text;
  EXPECT_TRUE(j["sky"] == "clear" || j["sky"] == "cloudy" || j["sky"] == "rain") << text;
}

TEST(ServerStructured, JsonSchemaAnswersWholeAndStreamed) {
  TestServer s(small_options());
  for (int seed = 0; seed < 3; ++seed) {
    const HttpResult r = post(s, "/v1/chat/completions", schema_body(seed, false).dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = json::parse(r.body);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
    expect_weather(j["choices"][0]["message"]["content"].get<std::string>());
  }
  const HttpResult r = post(s, "/v1/chat/completions", schema_body(9, true).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::string finish;
  for (const std::string& d : sse_data(r.body)) {
    if (d == "[DONE]") continue;
    const json c = json::parse(d);
    if (!c["choices"].empty() && c["choices"][0]["finish_reason"].is_string()) finish = c["choices"][0]["finish_reason"];
  }
  const std::string text = streamed_text(r.body);
  EXPECT_EQ(finish, "stop");
  expect_weather(text);
}

TEST(ServerStructured, SchemasOutsideTheSubsetAre400NamingTheKeyword) {
  TestServer s(small_options(1, 128));
  for (const auto& [keyword, bad] : std::vector<std::pair<std::string, json>>{
           {"pattern", json::parse(R"({"type":"string","pattern":"a+"})")},
           {"$ref", json::parse(R"({"type":"object","properties":{"a":{"$ref":"#/x"}}})")},
           {"minimum", json::parse(R"({"type":"number","minimum":0})")},
           {"oneOf", json::parse(R"({"oneOf":[{"type":"string"}]})")}}) {
    json b = schema_body(0, false);
    b["response_format"]["json_schema"]["schema"] = bad;
    const HttpResult r = post(s, "/v1/chat/completions", b.dump());
    ASSERT_EQ(r.status, 400) << r.body;
    const json e = json::parse(r.body)["error"];
    EXPECT_EQ(e["code"], "unsupported_schema") << r.body;
    EXPECT_NE(e["message"].get<std::string>().find("'" + keyword + "'"), std::string::npos) << r.body;
    EXPECT_EQ(e["param"].get<std::string>().rfind("response_format.json_schema.schema", 0), 0u) << r.body;
  }
}

}  // namespace
}  // namespace dsv3::test
