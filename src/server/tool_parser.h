// Incremental parser of DeepSeek tool calls in generated tokens: a state machine keyed on the
// marker token ids of tokenizer/tool_calls.h (one added token each), fed token by token as the
// scheduler emits them, any number per step (MTP speculation emits several). It streams each
// call's arguments as they are generated and holds back only text that may still be the V3
// fence's closing "\n```".
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tool_calls.h"

namespace dsv3::server {

struct ToolCallEvent {
  enum Kind {
    kContent,    // text outside the calls
    kCallStart,  // a call's name is known: `text` is the name
    kArguments,  // a fragment of call `index`'s arguments
  };
  Kind kind;
  int index = -1;  // the call (kCallStart, kArguments)
  std::string text;
};

struct ParsedToolCall {
  std::string name, arguments;
};

class ToolCallParser {
 public:
  ToolCallParser(const ToolCallSyntax& syntax, const ToolCallTokens& ids) : syn_(syntax), ids_(ids) {}

  // One generated token: its id and the text the stream decoder released with it (may be empty,
  // or hold text of earlier tokens; a marker's own text at its end is dropped). Appends what is
  // now final to `out`.
  void push(int32_t id, std::string_view text, std::vector<ToolCallEvent>& out);
  // A step of tokens, texts[i] released with ids[i].
  void push(std::span<const int32_t> ids, std::span<const std::string> texts, std::vector<ToolCallEvent>& out);
  // End of generation: held text is released; a call still open is closed as it stands.
  void finish(std::vector<ToolCallEvent>& out);

  // The calls whose name is known so far, arguments as released.
  const std::vector<ParsedToolCall>& calls() const { return calls_; }

 private:
  enum State {
    kText,     // content
    kBetween,  // inside <｜tool▁calls▁begin｜>, between calls
    kHeader,   // after <｜tool▁call▁begin｜>, before <｜tool▁sep｜>
    kName,     // V3 family: the name after <｜tool▁sep｜>, up to its newline
    kFence,    // V3 family: the "```json\n" that opens the arguments
    kArgs,     // the arguments
  };
  void text(std::string_view t, std::vector<ToolCallEvent>& out);
  void start_call(std::string_view name, std::vector<ToolCallEvent>& out);
  void args(std::string_view t, std::vector<ToolCallEvent>& out);
  void end_call(std::vector<ToolCallEvent>& out);

  ToolCallSyntax syn_;
  ToolCallTokens ids_;
  State state_ = kText;
  std::string buf_;   // kHeader / kName / kFence: text not yet understood
  std::string held_;  // kArgs: a tail that may be the start of args_close
  std::vector<ParsedToolCall> calls_;
};

}  // namespace dsv3::server
