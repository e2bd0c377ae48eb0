// Tool-call markup per chat format, tool definitions and the "## Tools" prompt; see tool_calls.h.
#include "tokenizer/tool_calls.h"

#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "tokenizer/py_json.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

ToolCallSyntax tool_call_syntax(ChatTemplateKind kind) {
  ToolCallSyntax s;
  if (kind == ChatTemplateKind::kDeepSeekV31) {
    s.name_first = true;
  } else {
    s.type_prefix = "function";
    s.args_open = "\n```json\n";
    s.args_close = "\n```";
    s.call_separator = "\n";
  }
  return s;
}

std::optional<ToolCallTokens> tool_call_tokens(const ToolCallSyntax& s, const Tokenizer& tok) {
  const auto a = tok.token_to_id(s.calls_begin), b = tok.token_to_id(s.call_begin), c = tok.token_to_id(s.sep),
             d = tok.token_to_id(s.call_end), e = tok.token_to_id(s.calls_end);
  if (!a || !b || !c || !d || !e) return std::nullopt;
  return ToolCallTokens{*a, *b, *c, *d, *e};
}

std::vector<ToolDefinition> tool_definitions_from_json(const nlohmann::ordered_json& tools) {
  DSV3_CHECK(tools.is_array(), "'tools' must be an array of {\"type\": \"function\", \"function\": {...}}");
  std::vector<ToolDefinition> out;
  std::set<std::string> names;
  for (size_t i = 0; i < tools.size(); ++i) {
    const auto& t = tools[i];
    const std::string at = str_cat("tools[", i, "]");
    DSV3_CHECK(t.is_object(), at, " must be an object");
    DSV3_CHECK(t.contains("type") && t["type"] == "function", at, ".type must be \"function\"");
    DSV3_CHECK(t.contains("function") && t["function"].is_object(), at, ".function must be an object");
    const auto& f = t["function"];
    DSV3_CHECK(f.contains("name") && f["name"].is_string(), at, ".function.name must be a string");
    ToolDefinition d;
    d.name = f["name"].get<std::string>();
    bool name_ok = !d.name.empty() && d.name.size() <= 64;
    for (const char c : d.name)
      name_ok = name_ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                            c == '_' || c == '-' || c == '.');
    DSV3_CHECK(name_ok, at, ".function.name '", d.name, "' must be 1 to 64 of a-z, A-Z, 0-9, '_', '-', '.'");
    DSV3_CHECK(names.insert(d.name).second, at, ".function.name '", d.name, "' is declared twice");
    if (f.contains("description") && !f["description"].is_null()) {
      DSV3_CHECK(f["description"].is_string(), at, ".function.description must be a string");
      d.description = f["description"].get<std::string>();
    }
    if (f.contains("parameters") && !f["parameters"].is_null()) {
      DSV3_CHECK(f["parameters"].is_object(), at, ".function.parameters must be a JSON Schema object");
      d.parameters = python_json_dumps(f["parameters"]);
    } else {
      d.parameters = "{}";
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::string tool_system_prompt(ChatTemplateKind kind, const std::vector<ToolDefinition>& tools) {
  const ToolCallSyntax s = tool_call_syntax(kind);
  std::string out = "## Tools\nYou have access to the following tools:\n\n";
  for (const ToolDefinition& t : tools) {
    out += "### " + t.name + "\nDescription: " + t.description.value_or("") + "\n\nParameters: " + t.parameters +
           "\n\n";
  }
  std::string call = std::string(s.call_begin);
  call += s.name_first ? "tool_call_name" + std::string(s.sep)
                       : std::string(s.type_prefix) + std::string(s.sep) + "tool_call_name";
  call += std::string(s.args_open) + "tool_call_arguments" + std::string(s.args_close) + std::string(s.call_end);
  out += "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n" + std::string(s.calls_begin) + call +
         "{additional_tool_calls}" + std::string(s.calls_end) +
         "\n\nWhere:\n- `tool_call_name` must be an exact match to one of the available tools\n"
         "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n";
  out += s.call_separator.empty() ? "- For multiple tool calls, chain them directly without separators or spaces"
                                  : "- For multiple tool calls, chain them with a newline as separator";
  return out;
}

}  // namespace dsv3
