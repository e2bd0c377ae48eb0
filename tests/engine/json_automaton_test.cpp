// The JSON byte automaton and the schema compiler: what each accepts and refuses, checked
// against nlohmann's parser on random documents and on hand-picked edge cases.
#include <gtest/gtest.h>

#include <random>

#include "engine/json_automaton.h"

namespace dsv3 {
namespace {

using ojson = nlohmann::ordered_json;

std::shared_ptr<const JsonGrammar> schema(const std::string& s) {
  return std::make_shared<const JsonGrammar>(compile_json_schema(ojson::parse(s)));
}
std::shared_ptr<const JsonGrammar> object_mode() { return std::make_shared<const JsonGrammar>(json_object_grammar()); }

// Whether the whole text is accepted as a complete value.
bool accepts(const std::shared_ptr<const JsonGrammar>& g, std::string_view text) {
  JsonAutomaton a(g);
  return a.advance(text) && a.can_end();
}
// Whether the text is a prefix the automaton accepts (not necessarily complete).
bool prefix_ok(const std::shared_ptr<const JsonGrammar>& g, std::string_view text) {
  JsonAutomaton a(g);
  return a.advance(text);
}

TEST(JsonAutomaton, ObjectModeAcceptsObjectsOnly) {
  auto g = object_mode();
  for (const char* ok : {"{}", " {}", "{\"a\":1}", "{ \"a\" : [1, 2.5e-3, -0, true, null, \"x\"] }",
                         "{\"a\":{\"b\":{\"c\":[]}}}", "{\n  \"k\": \"\\u00e9\\n\\\"\"\n}", "{\"\xC3\xA9\":\"\xF0\x9F\x98\x80\"}"})
    EXPECT_TRUE(accepts(g, ok)) << ok;
  for (const char* bad : {"[]", "1", "\"s\"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":01}",
                          "{\"a\":1.}", "{\"a\":.5}", "{\"a\":tru}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}",
                          "{\"a\":\"\xC0\xAF\"}", "{\"a\":\"\xED\xA0\x80\"}", "{\"a\":\"\xF4\x90\x80\x80\"}",
                          "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}", "{} ", "{}{}",
                          "{\"a\":1}x"})
    EXPECT_FALSE(accepts(g, bad)) << bad;
}

TEST(JsonAutomaton, FinishedMeansNothingMayFollow) {
  auto g = object_mode();
  JsonAutomaton a(g);
  ASSERT_TRUE(a.advance("{\"a\":1"));
  EXPECT_FALSE(a.can_end());
  EXPECT_FALSE(a.finished());
  ASSERT_TRUE(a.advance("}"));
  EXPECT_TRUE(a.can_end());
  EXPECT_TRUE(a.finished());
  for (int b = 0; b < 256; ++b) EXPECT_FALSE(JsonAutomaton(a).advance(uint8_t(b))) << b;
  // A top-level number is complete yet may go on.
  auto n = schema(R"({"type": "number"})");
  JsonAutomaton x(n);
  ASSERT_TRUE(x.advance("12"));
  EXPECT_TRUE(x.can_end());
  EXPECT_FALSE(x.finished());
  EXPECT_TRUE(x.advance("3"));
}

TEST(JsonAutomaton, WhitespaceRunsAreBounded) {
  auto g = object_mode();
  EXPECT_TRUE(accepts(g, "{" + std::string(kJsonMaxWhitespace, ' ') + "}"));
  EXPECT_FALSE(prefix_ok(g, "{" + std::string(kJsonMaxWhitespace + 1, ' ')));
  EXPECT_TRUE(accepts(g, "{\"a\":\n" + std::string(kJsonMaxWhitespace - 1, ' ') + "1" + std::string(kJsonMaxWhitespace, '\t') + "}"));
  // One newline per run, no carriage returns.
  EXPECT_TRUE(accepts(g, "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}"));
  EXPECT_FALSE(prefix_ok(g, "{\n\n"));
  EXPECT_FALSE(prefix_ok(g, "{ \n \n"));
  EXPECT_FALSE(prefix_ok(g, "{\r\n"));
}

TEST(JsonAutomaton, DepthAndDigitsAreBounded) {
  auto g = object_mode();
  std::string deep = "{\"a\":";
  for (int i = 0; i < kJsonMaxDepth; ++i) deep += "[";
  EXPECT_FALSE(prefix_ok(g, deep));
  // At the depth bound no prefix is a dead end: containers stop opening, scalars still fit.
  for (const char* open : {"{\"k\":", "["}) {
    std::string nest = "{\"k\":";
    while (prefix_ok(g, nest + open)) nest += open;
    EXPECT_TRUE(prefix_ok(g, nest + "1")) << nest;
    EXPECT_FALSE(prefix_ok(g, nest + "{")) << nest;
  }
  EXPECT_TRUE(accepts(g, "{\"a\":" + std::string(kJsonMaxDigits, '9') + "." + std::string(kJsonMaxDigits, '9') + "}"));
  EXPECT_FALSE(prefix_ok(g, "{\"a\":" + std::string(kJsonMaxDigits + 1, '9')));
  EXPECT_TRUE(accepts(g, "{\"a\":9999999999999999e+99}"));
  EXPECT_FALSE(prefix_ok(g, "{\"a\":1e123"));
}

// Random JSON values, dumped compactly or indented: every one is accepted by the object mode.
ojson random_value(std::mt19937& rng, int depth) {
  std::uniform_int_distribution<int> kind(0, depth > 3 ? 4 : 6);
  switch (kind(rng)) {
    case 0: return nullptr;
    case 1: return bool(rng() & 1);
    case 2: return int64_t(rng() % 2000000) - 1000000;
    case 3: return double(int64_t(rng() % 2000000) - 1000000) / 1024.0;
    case 4: {
      static const char* pieces[] = {"a", "é", "\"", "\\", "\n", "\t", "😀", "中", "/", "\x01", " "};
      std::string s;
      for (int i = int(rng() % 6); i > 0; --i) s += pieces[rng() % 11];
      return s;
    }
    case 5: {
      ojson a = ojson::array();
      for (int i = int(rng() % 4); i > 0; --i) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      ojson o = ojson::object();
      for (int i = int(rng() % 4); i > 0; --i) o[std::string(1, char('a' + rng() % 26))] = random_value(rng, depth + 1);
      return o;
    }
  }
}

TEST(JsonAutomaton, AcceptsRandomDocumentsAsNlohmannWritesThem) {
  auto g = object_mode();
  std::mt19937 rng(7);
  for (int i = 0; i < 500; ++i) {
    ojson o = ojson::object();
    for (int k = int(rng() % 5); k > 0; --k) o[std::string(1, char('a' + rng() % 26))] = random_value(rng, 1);
    EXPECT_TRUE(accepts(g, o.dump())) << o.dump();
    EXPECT_TRUE(accepts(g, o.dump(2))) << o.dump(2);
    EXPECT_TRUE(accepts(g, o.dump(-1, ' ', true))) << o.dump(-1, ' ', true);  // \u escapes
  }
}

TEST(JsonAutomaton, WhatItAcceptsNlohmannParses) {
  // Random walks through the automaton over JSON's alphabet (each step a random byte it
  // allows): every time the text so far is complete, it is a JSON object.
  auto g = object_mode();
  std::mt19937 rng(11);
  std::string alphabet = "{}[]:,\"\\/ \n0123456789.-+eEtrufalsnbu\xC3\xA9\xF0\x9F\x98\x80xdDAc";
  int complete = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    JsonAutomaton a(g);
    for (int n = 0; n < 60; ++n) {
      std::shuffle(alphabet.begin(), alphabet.end(), rng);
      size_t k = 0;
      while (k < alphabet.size() && !a.advance(uint8_t(alphabet[k]))) ++k;
      if (k == alphabet.size()) break;
      s += alphabet[k];
      if (!a.can_end()) continue;
      ++complete;
      ojson j;
      ASSERT_NO_THROW(j = ojson::parse(s)) << s;
      EXPECT_TRUE(j.is_object()) << s;
    }
  }
  EXPECT_GT(complete, 100);
}

TEST(JsonSchema, PropertiesInDeclaredOrderRequiredAndOptional) {
  auto g = schema(R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
                      "tags":{"type":"array","items":{"type":"string"}}},"required":["name","tags"],
                      "additionalProperties":false})");
  EXPECT_TRUE(accepts(g, R"({"name":"x","age":3,"tags":[]})"));
  EXPECT_TRUE(accepts(g, R"({"name":"x","tags":["a","b"]})"));
  EXPECT_TRUE(accepts(g, R"({ "name" : "x" , "tags" : [ ] })"));
  EXPECT_FALSE(accepts(g, R"({"name":"x"})"));                        // tags required
  EXPECT_FALSE(accepts(g, R"({"tags":[],"name":"x"})"));              // declared order
  EXPECT_FALSE(accepts(g, R"({"name":"x","tags":[],"other":1})"));    // no others
  EXPECT_FALSE(accepts(g, R"({"name":"x","name":"y","tags":[]})"));   // no repeats
  EXPECT_FALSE(accepts(g, R"({"name":1,"tags":[]})"));
  EXPECT_FALSE(accepts(g, R"({"name":"x","age":3.5,"tags":[]})"));
  EXPECT_FALSE(prefix_ok(g, R"({"nam ")"));
}

TEST(JsonAutomaton, StringStatesAfterEscapesEqualPlainOnes) {
  // The mask cache keys on the state: "\u0041" and "\ud83d\ude00" leave the body as a plain
  // character does.
  auto g = schema(R"({"type": "string"})");
  JsonAutomaton plain(g), esc(g), pair(g);
  ASSERT_TRUE(plain.advance("\"ab"));
  ASSERT_TRUE(esc.advance("\"\\u0041b"));
  ASSERT_TRUE(pair.advance("\"\\ud83d\\ude00b"));
  EXPECT_TRUE(plain == esc);
  EXPECT_TRUE(plain == pair);
  EXPECT_EQ(plain.hash(), pair.hash());
}

TEST(JsonSchema, EscapedPropertyNames) {
  auto g = schema(R"({"properties":{"a\"b":{"type":"null"},"é":{"type":"boolean"}},"required":["a\"b"]})");
  EXPECT_TRUE(accepts(g, R"({"a\"b":null,"é":true})"));
  EXPECT_FALSE(accepts(g, R"({"é":true})"));
}

TEST(JsonSchema, EnumConstAndTypeLists) {
  auto g = schema(R"({"type":"object","properties":{"c":{"enum":["red","green",1,10,null,{"x":[1]}]},
                      "k":{"const":"fixed"},"n":{"type":["string","null"]}},"required":["c","k","n"]})");
  for (const char* c : {"\"red\"", "\"green\"", "1", "10", "null", "{\"x\":[1]}"})
    EXPECT_TRUE(accepts(g, std::string(R"({"c":)") + c + R"(,"k":"fixed","n":null})")) << c;
  EXPECT_TRUE(accepts(g, R"({"c":1,"k":"fixed","n":"s"})"));
  for (const char* c : {"\"blue\"", "2", "100", "\"re\"", "{\"x\": [1]}"})
    EXPECT_FALSE(accepts(g, std::string(R"({"c":)") + c + R"(,"k":"fixed","n":null})")) << c;
  EXPECT_FALSE(accepts(g, R"({"c":1,"k":"other","n":null})"));
  EXPECT_FALSE(accepts(g, R"({"c":1,"k":"fixed","n":1})"));
}

TEST(JsonSchema, ArraysAndStringsCountItemsAndCharacters) {
  auto g = schema(R"({"type":"array","items":{"type":"string","minLength":2,"maxLength":3},"minItems":1,"maxItems":2})");
  EXPECT_TRUE(accepts(g, R"(["ab"])"));
  EXPECT_TRUE(accepts(g, R"(["abc","é😀"])"));
  EXPECT_TRUE(accepts(g, R"(["\n\u00e9", "a\""])"));  // an escape is one character
  EXPECT_FALSE(accepts(g, R"([])"));
  EXPECT_FALSE(accepts(g, R"(["a"])"));
  EXPECT_FALSE(prefix_ok(g, R"(["abcd)"));
  EXPECT_FALSE(prefix_ok(g, R"(["ab","ab",)"));
}

TEST(JsonSchema, IntegerBoundsPruneDigitsEarly) {
  auto g = schema(R"({"type":"integer","minimum":-5,"maximum":120})");
  for (int v = -20; v <= 200; ++v) EXPECT_EQ(accepts(g, std::to_string(v)), v >= -5 && v <= 120) << v;
  EXPECT_TRUE(prefix_ok(g, "12"));
  EXPECT_FALSE(prefix_ok(g, "121"));
  EXPECT_FALSE(prefix_ok(g, "-6"));
  EXPECT_FALSE(prefix_ok(g, "-0"));
  // No completion of "2" (2, 20-29, 200-299, ...) lies in [100, 199]: refused at once.
  auto h = schema(R"({"type":"integer","minimum":100,"maximum":199})");
  EXPECT_FALSE(prefix_ok(h, "2"));
  EXPECT_TRUE(prefix_ok(h, "1"));
  EXPECT_FALSE(accepts(h, "1"));
}

TEST(JsonSchema, AnyOfKeepsEveryLiveAlternative) {
  auto g = schema(R"({"anyOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},
                               {"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a","b"]},
                               {"type":"integer","maximum":9}]})");
  EXPECT_TRUE(accepts(g, R"({"a":1})"));
  EXPECT_TRUE(accepts(g, R"({"a":"s","b":2})"));
  EXPECT_TRUE(accepts(g, "7"));
  EXPECT_FALSE(accepts(g, R"({"a":"s"})"));
  EXPECT_FALSE(accepts(g, R"({"a":1,"b":2})"));
  EXPECT_FALSE(accepts(g, "10"));
  JsonAutomaton a(g);
  ASSERT_TRUE(a.advance("{\"a\":"));
  EXPECT_EQ(a.stacks(), 2);
}

TEST(JsonSchema, FreeFormObjectsAndAdditionalPropertiesSchemas) {
  auto g = schema(R"({"type":"object","additionalProperties":{"type":"integer"}})");
  EXPECT_TRUE(accepts(g, R"({"x":1,"y":2})"));
  EXPECT_FALSE(accepts(g, R"({"x":"1"})"));
  auto none = schema(R"({"type":"object","additionalProperties":false})");
  EXPECT_TRUE(accepts(none, "{}"));
  EXPECT_FALSE(accepts(none, R"({"x":1})"));
  auto any = schema(R"({"type":"object"})");
  EXPECT_TRUE(accepts(any, R"({"x":[{"y":null}]})"));
}

TEST(JsonSchema, OutsideTheSubsetNamesTheKeyword) {
  struct Case {
    const char* schema;
    const char* keyword;
  };
  for (const Case& c : std::initializer_list<Case>{
           {R"({"type":"string","format":"date-time"})", "format"},
           {R"({"type":"string","pattern":"^a"})", "pattern"},
           {R"({"$ref":"#/$defs/x"})", "$ref"},
           {R"({"oneOf":[{"type":"string"}]})", "oneOf"},
           {R"({"type":"number","minimum":0})", "minimum"},
           {R"({"type":"object","properties":{"a":{"type":"integer","exclusiveMinimum":0}}})", "exclusiveMinimum"},
           {R"({"type":"object","properties":{"a":{}},"additionalProperties":true})", "additionalProperties"},
           {R"({"type":"object","properties":{"a":{}},"required":["b"]})", "required"},
           {R"({"type":"tuple"})", "type"},
           {R"({"type":"array","prefixItems":[]})", "prefixItems"},
           {R"({"type":"string","minLength":3,"maxLength":2})", "minLength"},
       }) {
    try {
      compile_json_schema(ojson::parse(c.schema));
      ADD_FAILURE() << "accepted " << c.schema;
    } catch (const SchemaError& e) {
      EXPECT_EQ(e.keyword, c.keyword) << c.schema << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(c.keyword), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace dsv3
