#include "engine/tool_call_grammar.h"

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

std::vector<std::pair<int32_t, char>> tool_marker_bytes(const Tokenizer& tok) {
  // The markers are spelled alike in every DeepSeek format; only the text between them differs.
  const auto ids = tool_call_tokens(ToolCallSyntax{}, tok);
  if (!ids) return {};
  return {{ids->calls_begin, kToolMarkerBytes[0]},
          {ids->call_begin, kToolMarkerBytes[1]},
          {ids->sep, kToolMarkerBytes[2]},
          {ids->call_end, kToolMarkerBytes[3]},
          {ids->calls_end, kToolMarkerBytes[4]}};
}

JsonGrammar tool_call_grammar(const ToolCallSyntax& syn, const std::vector<ToolDefinition>& tools,
                              std::string_view function, bool parallel) {
  const std::string calls_begin(1, kToolMarkerBytes[0]), call_begin(1, kToolMarkerBytes[1]),
      sep(1, kToolMarkerBytes[2]), call_end(1, kToolMarkerBytes[3]), calls_end(1, kToolMarkerBytes[4]);
  JsonGrammarBuilder b;
  std::vector<int32_t> calls;
  for (size_t i = 0; i < tools.size(); ++i) {
    const ToolDefinition& t = tools[i];
    if (!function.empty() && t.name != function) continue;
    const auto params = nlohmann::ordered_json::parse(t.parameters);
    const int32_t args =
        params.is_object() && params.empty() ? b.free_object() : b.schema(params, str_cat("tools[", i, "].function.parameters"));
    // V3 family: call_begin "function" sep name "\n```json\n" ARGS "\n```" call_end;
    // V3.1: call_begin name sep ARGS call_end.
    const std::string head = syn.name_first ? str_cat(call_begin, t.name, sep)
                                            : str_cat(call_begin, syn.type_prefix, sep, t.name, syn.args_open);
    const std::string tail = str_cat(syn.args_close, call_end);
    calls.push_back(b.sequence({b.literal({head}), args, b.literal({tail})}));
  }
  DSV3_CHECK(!calls.empty(), "no tool named '", function, "'");
  const int32_t call = calls.size() == 1 ? calls[0] : b.any_of(calls);
  int32_t body = call;
  if (parallel) {
    // more := (separator call more)?  — repeats at one stack depth (JsonNode::sequence).
    const int32_t more = b.any_of({});
    std::vector<int32_t> again = {call, more};
    if (!syn.call_separator.empty()) again.insert(again.begin(), b.literal({std::string(syn.call_separator)}));
    b.set_alternatives(more, {b.sequence(again), b.literal({""})});
    body = b.sequence({call, more});
  }
  const int32_t root = b.sequence({b.literal({calls_begin}), body, b.literal({calls_end})});
  JsonGrammar g = std::move(b).finish(root);
  // Arguments as DeepSeek's templates replay them (Python's json.dumps: one space after ':' and
  // ','), give or take a space; no newlines, nothing before the calls.
  g.max_whitespace = 1;
  g.newlines = false;
  g.leading_whitespace = false;
  return g;
}

}  // namespace dsv3
