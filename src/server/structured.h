// Structured output in the API: response_format (json_object, json_schema) and forced tool
// calls turned into the grammar the engine constrains generation with; schemas outside the
// supported subset are a 400 naming the keyword.
#pragma once
#include <memory>
#include <string>

#include "engine/json_schema.h"
#include "server/task.h"

namespace dsv3::server {

// The grammar of the request's response_format: null for {"type": "text"} or none. `body` is
// the raw request (a schema's properties keep their declared order, which generation follows).
// Throws ApiError (400).
std::shared_ptr<const JsonGrammar> parse_response_format(const json& request, const std::string& body);

// tool_choice "required" or a named function: the grammar of the calls the answer must be
// (engine/tool_call_grammar.h); null for "none" and "auto". A parameter schema outside the
// subset is a 400 naming the keyword. Throws ApiError (400).
std::shared_ptr<const JsonGrammar> forced_tool_calls(const ToolTask& tools);

}  // namespace dsv3::server
