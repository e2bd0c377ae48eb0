#include "server/reasoning.h"

#include <algorithm>

namespace dsv3::server {

namespace {

constexpr std::string_view kOpen = "<think>", kClose = "</think>";

// Length of the longest suffix of `s` that is a proper prefix of `tag`.
size_t partial_suffix(std::string_view s, std::string_view tag) {
  for (size_t k = std::min(tag.size() - 1, s.size()); k > 0; --k)
    if (s.substr(s.size() - k) == tag.substr(0, k)) return k;
  return 0;
}

}  // namespace

ReasoningSplitter::Parts ReasoningSplitter::push(std::string_view text) {
  Parts out;
  held_ += text;
  for (;;) {
    switch (state_) {
      case kStart: {  // does the answer open with <think>? (leading whitespace allowed)
        const size_t b = held_.find_first_not_of(" \t\r\n");
        if (b == std::string::npos) return out;
        const std::string_view rest = std::string_view(held_).substr(b);
        if (rest.substr(0, std::min(rest.size(), kOpen.size())) != kOpen.substr(0, std::min(rest.size(), kOpen.size()))) {
          state_ = kContent;
          break;
        }
        if (rest.size() < kOpen.size()) return out;  // still a possible "<think>"
        held_.erase(0, b + kOpen.size());
        state_ = kReasoning;
        seen_reasoning_ = true;
        break;
      }
      case kReasoning: {
        if (!reasoning_started_) {
          const size_t b = held_.find_first_not_of("\r\n");
          if (b == std::string::npos) {
            held_.clear();
            return out;
          }
          held_.erase(0, b);
          reasoning_started_ = true;
        }
        const size_t end = held_.find(kClose);
        if (end != std::string::npos) {
          out.reasoning += held_.substr(0, end);
          held_.erase(0, end + kClose.size());
          state_ = kAfterThink;
          break;
        }
        const size_t keep = partial_suffix(held_, kClose);
        out.reasoning += held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return out;
      }
      case kAfterThink: {  // the content starts after the blank lines that follow </think>
        const size_t b = held_.find_first_not_of("\r\n");
        if (b == std::string::npos) {
          held_.clear();
          return out;
        }
        held_.erase(0, b);
        state_ = kContent;
        break;
      }
      case kContent:
        out.content += held_;
        held_.clear();
        return out;
    }
  }
}

ReasoningSplitter::Parts ReasoningSplitter::flush() {
  Parts out;
  if (state_ == kReasoning)
    out.reasoning = std::move(held_);
  else if (state_ != kAfterThink)
    out.content = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace dsv3::server
