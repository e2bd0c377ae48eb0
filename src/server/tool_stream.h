// A tool-calling answer as the API returns it: the job's token pieces go through the tool-call
// parser; text outside the calls comes out as content (stop strings cut it as they cut plain
// answers), each call as OpenAI's tool_calls deltas while it streams and as message.tool_calls
// at the end, with ids made up by the server (no DeepSeek format has call ids).
#pragma once
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "engine/stop_matcher.h"
#include "server/task.h"
#include "server/tool_parser.h"

namespace dsv3::server {

class ToolCallStream {
 public:
  // `stops`: the request's stop strings, matched on the content only.
  ToolCallStream(const ToolTask& task, std::vector<std::string> stops);

  struct Delta {
    std::string content;
    // delta.tool_calls entries: a call's first is {index, id, type "function", function {name,
    // arguments ""}}, its later ones {index, function {arguments: fragment}}.
    nlohmann::json tool_calls = nlohmann::json::array();
  };
  // The pieces of one take of the job's output, in order.
  Delta push(std::span<const TokenPiece> pieces);
  // End of generation: held text and a call left open.
  Delta finish();

  bool called() const { return !calls_.empty(); }
  // message.tool_calls: [{id, type "function", function {name, arguments}}].
  nlohmann::json tool_calls() const;

 private:
  void take(std::vector<ToolCallEvent>& events, Delta& d);

  ToolCallParser parser_;
  StopMatcher stops_;
  bool parallel_;
  struct Call {
    std::string id, name, arguments;
  };
  std::vector<Call> calls_;  // the calls passed on (only the first without parallel_tool_calls)
};

}  // namespace dsv3::server
