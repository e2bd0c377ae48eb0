// Tool-calling answers: parser events to OpenAI deltas and message.tool_calls; see tool_stream.h.
#include "server/tool_stream.h"

namespace dsv3::server {

using nlohmann::json;

ToolCallStream::ToolCallStream(const ToolTask& task, std::vector<std::string> stops)
    : parser_(task.syntax, task.ids), stops_(std::move(stops)), parallel_(task.parallel) {}

ToolCallStream::Delta ToolCallStream::push(std::span<const TokenPiece> pieces) {
  std::vector<ToolCallEvent> events;
  for (const TokenPiece& p : pieces) parser_.push(p.id, p.text, events);
  Delta d;
  take(events, d);
  return d;
}

ToolCallStream::Delta ToolCallStream::finish() {
  std::vector<ToolCallEvent> events;
  parser_.finish(events);
  Delta d;
  take(events, d);
  if (!stops_.stopped()) d.content += stops_.flush();
  return d;
}

void ToolCallStream::take(std::vector<ToolCallEvent>& events, Delta& d) {
  for (ToolCallEvent& e : events) {
    if (e.kind == ToolCallEvent::kContent) {
      if (!stops_.stopped()) d.content += stops_.push(e.text);
      continue;
    }
    // parallel_tool_calls false: the first call only.
    if (!parallel_ && e.index > 0) continue;
    if (e.kind == ToolCallEvent::kCallStart) {
      calls_.push_back({random_id("call_", 24), e.text, ""});
      d.tool_calls.push_back({{"index", e.index},
                              {"id", calls_.back().id},
                              {"type", "function"},
                              {"function", {{"name", e.text}, {"arguments", ""}}}});
    } else {
      calls_[size_t(e.index)].arguments += e.text;
      d.tool_calls.push_back({{"index", e.index}, {"function", {{"arguments", e.text}}}});
    }
  }
}

json ToolCallStream::tool_calls() const {
  json out = json::array();
  for (const Call& c : calls_)
    out.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return out;
}

}  // namespace dsv3::server
