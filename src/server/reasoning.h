// DeepSeek-R1-style reasoning in streamed text: what comes between "<think>" and "</think>"
// is reasoning_content, the rest is content (as DeepSeek's API and vLLM's deepseek_r1 parser
// return it). Text that could still be a partial tag is held back.
#pragma once
#include <string>
#include <string_view>

namespace dsv3::server {

class ReasoningSplitter {
 public:
  // `in_reasoning`: the prompt already opened "<think>" (R1 template), so the answer starts
  // with reasoning. Otherwise reasoning is recognised only when the answer opens with "<think>".
  explicit ReasoningSplitter(bool in_reasoning) : state_(in_reasoning ? kReasoning : kStart) {
    seen_reasoning_ = in_reasoning;
  }

  struct Parts {
    std::string reasoning, content;
  };
  // Appends text; returns what is now final of each part.
  Parts push(std::string_view text);
  // The held-back text, at the end of the answer.
  Parts flush();
  // True once the answer had a reasoning part (even an empty one).
  bool seen_reasoning() const { return seen_reasoning_; }

 private:
  enum State { kStart, kReasoning, kAfterThink, kContent };
  State state_;
  bool seen_reasoning_ = false;
  bool reasoning_started_ = false;  // leading newlines of the reasoning are dropped
  std::string held_;
};

}  // namespace dsv3::server
