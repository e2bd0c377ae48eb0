// The tool-call markup of each DeepSeek chat format, in one place: the server's tool-call parser,
// the tool prompt it writes, and constrained decoding all read it from here.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"

namespace dsv3 {

class Tokenizer;

// One assistant turn's calls are
//   calls_begin (call_begin type_prefix sep name args_open ARGUMENTS args_close call_end)
//   [call_separator call_begin ...] calls_end
// V3, R1, V3-0324, R1-0528: "function<｜tool▁sep｜>name\n```json\n{...}\n```", calls joined by "\n";
// V3.1: "name<｜tool▁sep｜>{...}", no separator, no fence.
struct ToolCallSyntax {
  std::string_view calls_begin = "<｜tool▁calls▁begin｜>";
  std::string_view call_begin = "<｜tool▁call▁begin｜>";
  std::string_view sep = "<｜tool▁sep｜>";
  std::string_view call_end = "<｜tool▁call▁end｜>";
  std::string_view calls_end = "<｜tool▁calls▁end｜>";
  bool name_first = false;          // V3.1: name before sep; V3: type before sep, name after
  std::string_view type_prefix;     // "function" (V3 family) or empty
  std::string_view args_open;       // "\n```json\n" (V3 family) or empty
  std::string_view args_close;      // "\n```" (V3 family) or empty
  std::string_view call_separator;  // "\n" (V3 family) or empty
};
ToolCallSyntax tool_call_syntax(ChatTemplateKind kind);

// The five markers as token ids (each is one added token in DeepSeek's vocabulary); nullopt when
// the tokenizer lacks any of them, in which case tool calls cannot be recognised.
struct ToolCallTokens {
  int32_t calls_begin, call_begin, sep, call_end, calls_end;
};
std::optional<ToolCallTokens> tool_call_tokens(const ToolCallSyntax& syntax, const Tokenizer& tok);

// A function tool a request declares: OpenAI's {"type": "function", "function": {"name",
// "description"?, "parameters"?}}.
struct ToolDefinition {
  std::string name;
  std::optional<std::string> description;
  std::string parameters;  // the JSON schema as Python's json.dumps writes it ("{}" if absent)
};
// Parses and validates OpenAI's "tools" array. Throws dsv3::Error naming the bad entry and
// field: not an array or empty, a type other than "function", a missing or empty name, a name
// outside [A-Za-z0-9_.-]{1,64} (OpenAI's rule), a duplicate name, a description that is not a
// string, parameters that are not a JSON object.
std::vector<ToolDefinition> tool_definitions_from_json(const nlohmann::ordered_json& tools);

// The "## Tools" block the server appends to the system prompt (the templates do not render
// `tools`): V3.1's text as its model card gives it, and the same text with the fenced call format
// for the V3 family (as vLLM's example tool templates for DeepSeek-V3 and R1 write it).
std::string tool_system_prompt(ChatTemplateKind kind, const std::vector<ToolDefinition>& tools);

}  // namespace dsv3
