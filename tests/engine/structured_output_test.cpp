// Structured output through the scheduler on the embedded trained model (models/dsv3-kjv, a
// 2048-token vocabulary): every answer is a value of the schema, with and without MTP
// speculation, and greedy speculation gives the same text as plain decoding.
#include <gtest/gtest.h>

#include "engine/scheduler.h"
#include "engine/token_mask.h"

namespace dsv3 {
namespace {

using ojson = nlohmann::ordered_json;

const char* kVerseSchema = R"({"type":"object","properties":{
  "book":{"enum":["Genesis","Exodus","Psalms"]},
  "chapter":{"type":"integer","minimum":1,"maximum":50},
  "text":{"type":"string","minLength":1,"maxLength":40},
  "people":{"type":"array","items":{"type":"string","maxLength":12},"maxItems":3},
  "holy":{"type":"boolean"}},
  "required":["book","chapter","text","people"],"additionalProperties":false})";

struct Answer {
  std::string text, finish, error;
};

Answer run(Scheduler& sched, const Tokenizer& tok, std::shared_ptr<const JsonGrammar> g, float temperature,
           uint64_t seed) {
  GenRequest r;
  r.prompt = tok.encode("And God said, Let there be light:", true);
  r.max_tokens = 400;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.grammar = std::move(g);
  auto job = sched.submit(r);
  Answer a;
  for (;;) {
    JobOutput o = job->take(std::chrono::milliseconds(1000));
    a.text += o.text;
    if (o.done) {
      a.finish = o.finish_reason;
      a.error = o.error;
      return a;
    }
  }
}

void expect_verse(const Answer& a) {
  ASSERT_EQ(a.finish, "stop") << ojson(a.text).dump() << " " << a.error;
  ojson j;
  ASSERT_NO_THROW(j = ojson::parse(a.text)) << a.text;
  ASSERT_TRUE(j.is_object()) << a.text;
  EXPECT_TRUE(j["book"] == "Genesis" || j["book"] == "Exodus" || j["book"] == "Psalms") << a.text;
  EXPECT_TRUE(j["chapter"].is_number_integer() && j["chapter"] >= 1 && j["chapter"] <= 50) << a.text;
  EXPECT_TRUE(j["text"].is_string() && !j["text"].get<std::string>().empty()) << a.text;
  EXPECT_TRUE(j["people"].is_array() && j["people"].size() <= 3) << a.text;
  EXPECT_TRUE(!j.contains("holy") || j["holy"].is_boolean()) << a.text;
  for (const auto& [k, v] : j.items()) EXPECT_TRUE(k == "book" || k == "chapter" || k == "text" || k == "people" || k == "holy");
}

TEST(StructuredOutput, TheKjvModelAnswersInTheSchemaWithAndWithoutSpeculation) {
  const LoadedModel m = load_model(DSV3_KJV_DIR);
  const Tokenizer tok = Tokenizer::from_dir(DSV3_KJV_DIR);
  auto g = std::make_shared<const JsonGrammar>(compile_json_schema(ojson::parse(kVerseSchema)));
  std::string greedy[2];
  for (int k : {0, 2}) {
    SchedulerOptions o;
    o.max_batch = 2;
    o.ctx_size = 512;
    o.threads = 1;
    o.speculative_k = k;
    Scheduler sched(*m.model, tok, o);
    for (uint64_t seed = 0; seed < 3; ++seed) {
      const Answer a = run(sched, tok, g, 1.0f, seed);
      expect_verse(a);
    }
    const Answer a = run(sched, tok, g, 0.0f, 0);
    expect_verse(a);
    greedy[k / 2] = a.text;
    if (k > 0) {
      EXPECT_GT(sched.spec_drafted(), 0);
    }
  }
  EXPECT_EQ(greedy[0], greedy[1]);
}

TEST(StructuredOutput, JsonModeOnTheKjvModelGivesAnObject) {
  const LoadedModel m = load_model(DSV3_KJV_DIR);
  const Tokenizer tok = Tokenizer::from_dir(DSV3_KJV_DIR);
  SchedulerOptions o;
  o.max_batch = 1;
  o.ctx_size = 1024;
  o.threads = 1;
  Scheduler sched(*m.model, tok, o);
  GenRequest r;
  r.prompt = tok.encode("In the beginning", true);
  r.max_tokens = 600;
  r.sampling.temperature = 0.0f;
  r.grammar = std::make_shared<const JsonGrammar>(json_object_grammar());
  auto job = sched.submit(r);
  std::string text;
  JobOutput out;
  do {
    out = job->take(std::chrono::milliseconds(1000));
    text += out.text;
  } while (!out.done);
  // Free-form JSON may run to max_tokens inside a string; what was generated is always a prefix
  // the automaton accepts, and a "stop" answer parses as an object.
  JsonAutomaton a(r.grammar);
  EXPECT_TRUE(a.advance(text)) << text;
  if (out.finish_reason == "stop") {
    EXPECT_TRUE(ojson::parse(text).is_object()) << text;
  } else {
    EXPECT_EQ(out.finish_reason, "length") << text;
  }
}

}  // namespace
}  // namespace dsv3
