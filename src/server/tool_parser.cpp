// DeepSeek tool-call parser; see tool_parser.h.
#include "server/tool_parser.h"

#include <algorithm>

#include "core/error.h"

namespace dsv3::server {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// The length of the longest suffix of `s` that is a proper or whole prefix of `marker`.
size_t partial_suffix(std::string_view s, std::string_view marker) {
  for (size_t n = std::min(s.size(), marker.size()); n > 0; --n)
    if (s.substr(s.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

}  // namespace

void ToolCallParser::push(std::span<const int32_t> ids, std::span<const std::string> texts,
                          std::vector<ToolCallEvent>& out) {
  DSV3_ASSERT(ids.size() == texts.size());
  for (size_t i = 0; i < ids.size(); ++i) push(ids[i], texts[i], out);
}

void ToolCallParser::push(int32_t id, std::string_view t, std::vector<ToolCallEvent>& out) {
  // The markers are not special tokens in DeepSeek's vocabulary, so a decoder that keeps
  // special tokens' text hands out the marker's own text with it: that is markup, not text.
  const std::string_view marker = id == ids_.calls_begin ? syn_.calls_begin
                                  : id == ids_.call_begin ? syn_.call_begin
                                  : id == ids_.sep        ? syn_.sep
                                  : id == ids_.call_end   ? syn_.call_end
                                  : id == ids_.calls_end  ? syn_.calls_end
                                                          : std::string_view();
  if (!marker.empty() && t.ends_with(marker)) t.remove_suffix(marker.size());
  // Text released with a token belongs before it (the decoder only ever releases text late).
  text(t, out);
  if (id == ids_.calls_begin) {
    if (state_ == kText) state_ = kBetween;
  } else if (id == ids_.call_begin) {
    if (state_ != kText && state_ != kBetween) end_call(out);  // an unclosed call ends at the next one
    state_ = kHeader;
    buf_.clear();
  } else if (id == ids_.sep) {
    if (state_ == kHeader) {
      if (syn_.name_first) {
        start_call(trim(buf_), out);
        state_ = kArgs;
      } else {
        state_ = kName;  // the text before the separator was the type ("function")
      }
      buf_.clear();
    }
  } else if (id == ids_.call_end) {
    if (state_ != kText && state_ != kBetween) end_call(out);
  } else if (id == ids_.calls_end) {
    if (state_ != kText && state_ != kBetween) end_call(out);
    state_ = kText;
  }
}

void ToolCallParser::text(std::string_view t, std::vector<ToolCallEvent>& out) {
  if (t.empty()) return;
  switch (state_) {
    case kText:
      if (!out.empty() && out.back().kind == ToolCallEvent::kContent) {
        out.back().text += t;
      } else {
        out.push_back({ToolCallEvent::kContent, -1, std::string(t)});
      }
      return;
    case kBetween: return;  // the separator between calls ("\n" in the V3 family)
    case kHeader: buf_ += t; return;
    case kName: {
      buf_ += t;
      const size_t nl = buf_.find('\n');
      if (nl == std::string::npos) return;
      std::string rest = buf_.substr(nl + 1);
      start_call(trim(std::string_view(buf_).substr(0, nl)), out);
      buf_.clear();
      state_ = kFence;
      text(rest, out);
      return;
    }
    case kFence: {
      buf_ += t;
      const std::string_view open = trim(syn_.args_open);  // "```json"
      const std::string_view b = buf_;
      if (b.size() < open.size() + 1 && std::string(open).append("\n").starts_with(b)) return;  // still the fence
      std::string rest;
      if (b.starts_with("```")) {  // "```json\n", or another fence line: the arguments follow it
        const size_t nl = b.find('\n');
        if (nl == std::string_view::npos) return;
        rest = buf_.substr(nl + 1);
      } else {
        rest = buf_;  // no fence: the arguments start right away
      }
      buf_.clear();
      state_ = kArgs;
      args(rest, out);
      return;
    }
    case kArgs: args(t, out); return;
  }
}

void ToolCallParser::start_call(std::string_view name, std::vector<ToolCallEvent>& out) {
  calls_.push_back({std::string(name), {}});
  out.push_back({ToolCallEvent::kCallStart, int(calls_.size()) - 1, std::string(name)});
}

void ToolCallParser::args(std::string_view t, std::vector<ToolCallEvent>& out) {
  std::string s = held_ + std::string(t);
  held_.clear();
  const std::string_view close = syn_.args_close;
  size_t keep = close.empty() ? 0 : partial_suffix(s, close);
  if (!close.empty()) {  // a whole close followed by whitespace only (the separator of an unclosed call)
    size_t end = s.size();
    while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == ' ' || s[end - 1] == '\t' || s[end - 1] == '\r')) --end;
    if (end >= close.size() && std::string_view(s).substr(end - close.size(), close.size()) == close)
      keep = std::max(keep, s.size() - (end - close.size()));
  }
  held_ = s.substr(s.size() - keep);
  s.resize(s.size() - keep);
  if (s.empty()) return;
  const int index = int(calls_.size()) - 1;
  calls_.back().arguments += s;
  if (!out.empty() && out.back().kind == ToolCallEvent::kArguments && out.back().index == index) {
    out.back().text += s;
  } else {
    out.push_back({ToolCallEvent::kArguments, index, std::move(s)});
  }
}

void ToolCallParser::end_call(std::vector<ToolCallEvent>& out) {
  switch (state_) {
    case kHeader: start_call(trim(buf_), out); break;  // no separator: all of it is the name
    case kName: start_call(trim(buf_), out); break;   // no newline after the name
    case kFence: break;                                // the arguments never started
    case kArgs: {
      std::string tail = std::move(held_);
      held_.clear();
      if (!tail.empty() && trim(tail) != trim(syn_.args_close)) {  // a partial fence was argument text after all
        calls_.back().arguments += tail;
        out.push_back({ToolCallEvent::kArguments, int(calls_.size()) - 1, std::move(tail)});
      }
      break;
    }
    case kText:
    case kBetween: return;
  }
  buf_.clear();
  state_ = kBetween;
}

void ToolCallParser::finish(std::vector<ToolCallEvent>& out) {
  if (state_ != kText && state_ != kBetween) end_call(out);
}

}  // namespace dsv3::server
