// chat.jsonl conformance (text and ids) and the template's behaviour beyond those cases.
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "test_support.h"

namespace dsv3 {
namespace {

using test::RealTokenizerTest;

ChatTemplate real_template() {
  return ChatTemplate::from_tokenizer_config(test::real_tokenizer_dir() / "tokenizer_config.json");
}

std::string render(const ChatTemplate& t, const char* messages_json, bool gen) {
  const auto msgs = chat_messages_from_json(nlohmann::json::parse(messages_json));
  return t.render(msgs, gen);
}

TEST_F(RealTokenizerTest, ChatJsonl) {
  const ChatTemplate tpl = real_template();
  EXPECT_EQ(tpl.kind(), ChatTemplateKind::kDeepSeekV3);
  const auto cases = test::read_jsonl(test::testdata("chat.jsonl"));
  ASSERT_GE(cases.size(), 8u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["messages"].dump());
    const auto msgs = chat_messages_from_json(c["messages"]);
    const std::string text = tpl.render(msgs, c["add_generation_prompt"].get<bool>());
    EXPECT_EQ(text, c["rendered"].get<std::string>());
    EXPECT_EQ(tok().encode(text), c["ids"].get<std::vector<int32_t>>());
  }
}

TEST_F(RealTokenizerTest, ChatTemplateMultiTurn) {
  const ChatTemplate tpl = real_template();
  EXPECT_EQ(render(tpl, R"([{"role":"system","content":"S"},{"role":"user","content":"Hi"},
      {"role":"assistant","content":"Hello"},{"role":"user","content":"Bye"}])",
                   true),
            "<｜begin▁of▁sentence｜>S<｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜>"
            "<｜User｜>Bye<｜Assistant｜>");
  // The V3 template keeps "<think>" text in history as it is.
  EXPECT_EQ(render(tpl, R"([{"role":"assistant","content":"<think>x</think>y"}])", false),
            "<｜begin▁of▁sentence｜><｜Assistant｜><think>x</think>y<｜end▁of▁sentence｜>");
}

TEST(ChatTemplate, ToolCallQuirksOfTheTemplate) {
  // Two calls in one turn, then the answer after the tool outputs, then a second call turn:
  // expected text worked out by hand from the Jinja source.
  const ChatTemplate tpl = ChatTemplate::deepseek_v3();
  const char* msgs = R"([
    {"role":"user","content":"Q"},
    {"role":"assistant","content":null,"tool_calls":[
      {"type":"function","function":{"name":"a","arguments":"{}"}},
      {"type":"function","function":{"name":"b","arguments":"{\"x\":1}"}}]},
    {"role":"tool","content":"A"},
    {"role":"tool","content":"B"},
    {"role":"assistant","content":"Done"},
    {"role":"user","content":"Again"},
    {"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"c","arguments":"[]"}}]},
    {"role":"tool","content":"C"}])";
  EXPECT_EQ(
      render(tpl, msgs, true),
      "<｜begin▁of▁sentence｜><｜User｜>Q"
      "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>a\n```"
      "json\n{}\n```<｜tool▁call▁end｜>"
      "\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>b\n```json\n{\"x\":1}\n```<｜tool▁call▁end｜>"
      "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
      "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>A<｜tool▁output▁end｜>"
      "\n<｜tool▁output▁begin｜>B<｜tool▁output▁end｜>"
      "<｜tool▁outputs▁end｜>Done<｜end▁of▁sentence｜>"
      "<｜User｜>Again"
      "\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>c\n```json\n[]\n```<｜tool▁call▁end｜>"
      "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
      "\n<｜tool▁output▁begin｜>C<｜tool▁output▁end｜><｜tool▁outputs▁end｜>");
}

TEST(ChatTemplate, EdgeCases) {
  const ChatTemplate tpl = ChatTemplate::deepseek_v3("<s>");
  EXPECT_EQ(tpl.render({}, false), "<s>");
  EXPECT_EQ(tpl.render({}, true), "<s><｜Assistant｜>");
  // Unknown roles render nothing; empty system prompts still join with a blank line.
  EXPECT_EQ(render(tpl, R"([{"role":"system","content":""},{"role":"system","content":"B"},
      {"role":"narrator","content":"x"},{"role":"user","content":""}])",
                   false),
            "<s>\n\nB<｜User｜>");
  EXPECT_THROW(render(tpl, R"([{"role":"user","content":null}])", false), Error);
  EXPECT_THROW(render(tpl, R"([{"role":"system"}])", false), Error);
}

TEST_F(RealTokenizerTest, RecognisesR1Templates) {
  std::ifstream in(test::real_tokenizer_dir() / "tokenizer_config.json");
  const auto cfg = nlohmann::json::parse(in);
  std::string v3 = cfg["chat_template"].get<std::string>();
  const std::string from =
      "{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}";
  const std::string to =
      "{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}{% set "
      "content = "
      "content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + "
      "'<｜end▁of▁sentence｜>'}}";
  std::string r1 = v3;
  ASSERT_NE(r1.find(from), std::string::npos);
  r1.replace(r1.find(from), from.size(), to);
  const ChatTemplate t1 = ChatTemplate::from_template(r1, "<s>");
  EXPECT_EQ(t1.kind(), ChatTemplateKind::kDeepSeekR1);
  EXPECT_FALSE(t1.opens_think());
  EXPECT_EQ(
      render(
          t1,
          R"([{"role":"user","content":"Q"},{"role":"assistant","content":"<think>a</think>b</think>c"}])",
          true),
      "<s><｜User｜>Q<｜Assistant｜>c<｜end▁of▁sentence｜><｜Assistant｜>");
  const std::string gen = "{{'<｜Assistant｜>'}}{% endif %}";
  r1.replace(r1.find(gen), gen.size(), "{{'<｜Assistant｜><think>\n'}}{% endif %}");
  const ChatTemplate t2 = ChatTemplate::from_template(r1, "<s>");
  EXPECT_TRUE(t2.opens_think());
  EXPECT_EQ(render(t2, R"([{"role":"user","content":"Q"}])", true),
            "<s><｜User｜>Q<｜Assistant｜><think>\n");
  // Recognition ignores whitespace, which tokenizer_config.json copies reformat.
  EXPECT_EQ(ChatTemplate::from_template(v3 + " \n", "<s>").kind(), ChatTemplateKind::kDeepSeekV3);
}

}  // namespace
}  // namespace dsv3
