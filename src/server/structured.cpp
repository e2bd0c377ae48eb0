#include "server/structured.h"

#include "engine/tool_call_grammar.h"

namespace dsv3::server {

namespace {

ApiError bad(const std::string& msg, const std::string& param, const std::string& code = "invalid_value") {
  return ApiError(400, msg, "invalid_request_error", param, code);
}

}  // namespace

std::shared_ptr<const JsonGrammar> parse_response_format(const json& request, const std::string& body) {
  auto it = request.find("response_format");
  if (it == request.end() || it->is_null()) return nullptr;
  const json& rf = *it;
  if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
    throw bad("'response_format' must be an object with a string 'type' ('text', 'json_object' or 'json_schema').",
              "response_format", "invalid_type");
  const std::string type = rf["type"].get<std::string>();
  if (type == "text") return nullptr;
  if (type == "json_object") return std::make_shared<const JsonGrammar>(json_object_grammar());
  if (type != "json_schema")
    throw bad(str_cat("Invalid value for 'response_format.type': '", type,
                      "'. Supported values are: 'text', 'json_object' and 'json_schema'."),
              "response_format.type");
  const json* js = rf.contains("json_schema") ? &rf["json_schema"] : nullptr;
  if (!js || !js->is_object())
    throw bad("'response_format.json_schema' must be an object with the schema in 'schema'.",
              "response_format.json_schema", "missing_required_parameter");
  if (!js->contains("schema"))
    throw bad("Missing required parameter: 'response_format.json_schema.schema'.", "response_format.json_schema.schema",
              "missing_required_parameter");
  // Re-read the schema with its keys in the order the client wrote them.
  const nlohmann::ordered_json schema = nlohmann::ordered_json::parse(body)["response_format"]["json_schema"]["schema"];
  try {
    return std::make_shared<const JsonGrammar>(compile_json_schema(schema));
  } catch (const SchemaError& e) {
    throw bad(str_cat("Invalid 'response_format.json_schema.schema': ", e.what()),
              "response_format.json_schema.schema" + (e.path.empty() ? std::string() : e.path), "unsupported_schema");
  }
}

std::shared_ptr<const JsonGrammar> forced_tool_calls(const ToolTask& tools) {
  if (!tools.parse() || (tools.choice != ToolChoice::kRequired && tools.choice != ToolChoice::kFunction)) return nullptr;
  try {
    return std::make_shared<const JsonGrammar>(tool_call_grammar(
        tools.syntax, tools.tools, tools.choice == ToolChoice::kFunction ? tools.function : "", tools.parallel));
  } catch (const SchemaError& e) {
    // e.path: "tools[i].function.parameters/properties/x/format".
    const auto slash = e.path.find('/');
    throw bad(str_cat("Invalid '", e.path.substr(0, slash), "' for a forced tool call (tool_choice '",
                      tools.choice == ToolChoice::kRequired ? "required" : tools.function, "'): ", e.what()),
              e.path, "unsupported_schema");
  }
}

}  // namespace dsv3::server
