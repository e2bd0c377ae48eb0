// Structured output for forced tool calls (tool_choice "required" or a named function): the
// calls spelled as the model's chat format writes them (tokenizer/tool_calls.h), each call's
// arguments a value of its tool's parameter schema. The five markers are added tokens; the byte
// automaton sees each as one byte that never occurs in UTF-8 text, so JSON never takes them.
#pragma once
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/json_schema.h"
#include "tokenizer/tool_calls.h"

namespace dsv3 {

// calls_begin, call_begin, sep, call_end, calls_end as the automaton sees them (0xF8..0xFC:
// bytes no UTF-8 text holds).
inline constexpr char kToolMarkerBytes[5] = {'\xF8', '\xF9', '\xFA', '\xFB', '\xFC'};

// The marker tokens of `tok` with the byte each stands for (empty when the tokenizer lacks any).
std::vector<std::pair<int32_t, char>> tool_marker_bytes(const Tokenizer& tok);

// The answer is one or more calls (exactly one unless `parallel`), from calls_begin to
// calls_end, with no text before them. Callable: every tool, or only the one named `function`
// (its name is then fixed). Arguments follow the tool's parameters (a schema with no keywords,
// "{}": any object). Throws SchemaError whose path starts "tools[i].function.parameters".
JsonGrammar tool_call_grammar(const ToolCallSyntax& syntax, const std::vector<ToolDefinition>& tools,
                              std::string_view function, bool parallel);

}  // namespace dsv3
