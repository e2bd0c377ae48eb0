// Structured output, part 1: a JSON schema (the subset agents use) compiled into a graph of
// grammar nodes that the byte automaton (json_automaton.h) walks. Anything outside the subset
// is refused with a SchemaError naming the keyword, never silently ignored.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace dsv3 {

// A schema this engine cannot enforce; `keyword` is the JSON-schema keyword at fault and
// `path` where it is ("/properties/name/format"); what() is one full sentence.
class SchemaError : public Error {
 public:
  SchemaError(std::string keyword, std::string path, const std::string& msg)
      : Error(msg), keyword(std::move(keyword)), path(std::move(path)) {}
  std::string keyword, path;
};

// A set of byte strings as a trie (enum and const values as canonical JSON, an object's property
// names as they appear after the opening quote, closing quote included). Node 0 is the root.
struct LiteralTrie {
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // (byte, child), sorted by byte
    int32_t terminal = -1;                          // index of the string ending here, or -1
    std::vector<int32_t> below;                     // sorted indices of the strings at or below
  };
  std::vector<Node> nodes{1};

  void insert(std::string_view s, int32_t index);
  int32_t child(int32_t node, uint8_t b) const;  // -1 when none
  // Whether a string with index in [lo, hi] ends at or below `node`.
  bool has_below(int32_t node, int32_t lo, int32_t hi) const;
};

struct JsonNode {
  // Sequence is not JSON: grammars that spell text around JSON values (a tool call's markers,
  // name and arguments) put pieces one after another.
  enum class Kind : uint8_t { Object, Array, String, Number, Integer, Literal, AnyOf, Sequence };
  Kind kind = Kind::AnyOf;

  // Object: the declared properties, emitted in their declared order (as llama.cpp's and
  // xgrammar's grammars do: a model need not choose an order, and the state stays small); each
  // optional one may be left out. Without 'properties' the keys are free strings and every
  // value follows `additional`.
  struct Property {
    std::string name;
    int32_t node = -1;
    bool required = false;
  };
  std::vector<Property> properties;
  LiteralTrie keys;  // property names, JSON-escaped, closing quote included
  bool free_keys = false;
  int32_t additional = -1;  // value node of free keys

  // Array: items (any value when the schema gives none), item counts.
  int32_t items = -1;
  int64_t min_items = 0, max_items = std::numeric_limits<int64_t>::max();

  // String: length in Unicode characters (an escape is one character).
  int64_t min_length = 0, max_length = std::numeric_limits<int64_t>::max();

  // Integer: inclusive bounds.
  int64_t minimum = std::numeric_limits<int64_t>::min(), maximum = std::numeric_limits<int64_t>::max();

  // Literal: the allowed values as canonical JSON (enum, const, true/false/null).
  LiteralTrie literals;

  // AnyOf: alternatives (also a list of types, and the "any JSON value" node).
  std::vector<int32_t> alternatives;

  // Sequence: nodes matched one after another (at least one). The last is matched in the
  // sequence's place, so a sequence that ends in an AnyOf holding the sequence again repeats
  // without growing the stack.
  std::vector<int32_t> sequence;
};

// Bounds that keep every generation finite and every state small.
// One run of whitespace between tokens: at most this many bytes of space, tab and one newline
// (indentation to depth ~10; as llama.cpp's JSON grammar).
inline constexpr int kJsonMaxWhitespace = 20;
inline constexpr int kJsonMaxDepth = 32;       // nested values
inline constexpr int kJsonMaxDigits = 16;      // digits of an integer part or a fraction
// Two exponent digits keep every number a finite double (at most 16 + 99 decimal places).
inline constexpr int kJsonMaxExponentDigits = 2;

struct JsonGrammar {
  std::vector<JsonNode> nodes;
  int32_t root = -1;
  int32_t key_string = -1;  // a plain String node: the keys of free-key objects
  // Whitespace between JSON tokens: bytes per run (at most kJsonMaxWhitespace), whether a run
  // may hold its one newline, and whether any may come before the value.
  int32_t max_whitespace = kJsonMaxWhitespace;
  bool newlines = true;
  bool leading_whitespace = true;
};

// Builds one grammar from pieces: JSON schemas, byte-string literals, sequences and
// alternatives (tool-call grammars are schemas inside fixed text). Node ids index
// JsonGrammar::nodes.
class JsonGrammarBuilder {
 public:
  JsonGrammarBuilder();
  // A schema as compile_json_schema reads it; `path` prefixes SchemaError::path. Throws SchemaError.
  int32_t schema(const nlohmann::ordered_json& schema, const std::string& path = "");
  // Any JSON object (OpenAI's JSON mode).
  int32_t free_object();
  // Exactly one of these byte strings (an empty one among them: the piece may be left out).
  int32_t literal(const std::vector<std::string>& alternatives);
  int32_t sequence(std::vector<int32_t> items);
  int32_t any_of(std::vector<int32_t> alternatives);
  // Alternatives filled in later, for a node that refers to itself (a repetition).
  void set_alternatives(int32_t any_of_node, std::vector<int32_t> alternatives);
  JsonGrammar finish(int32_t root) &&;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// {"type": "object", ...}-style schemas. Supported: type (a name or a list of names: object,
// array, string, number, integer, boolean, null), enum, const, properties, required,
// additionalProperties (false; or true / a schema on an object without 'properties'), items,
// minItems, maxItems, minLength, maxLength, integer minimum / maximum, anyOf; annotations
// (title, description, default, examples, $schema, $id, $comment, deprecated, readOnly,
// writeOnly) are ignored. An object with 'properties' admits only those (as OpenAI's strict
// mode). Throws SchemaError for anything else.
JsonGrammar compile_json_schema(const nlohmann::ordered_json& schema);
// OpenAI's JSON mode (response_format {"type": "json_object"}): any JSON object.
JsonGrammar json_object_grammar();

}  // namespace dsv3
