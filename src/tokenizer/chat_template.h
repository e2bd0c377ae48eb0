// DeepSeek's conversation formats rendered natively (no Jinja engine): the `chat_template` of
// tokenizer_config.json, re-implemented byte for byte for the template families we recognise.
#pragma once
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

namespace dsv3 {

struct ToolCall {
  std::string id;  // the OpenAI call id (not rendered: no DeepSeek format has ids)
  std::string type = "function";
  std::string name;
  // The arguments as the caller gave them: OpenAI's JSON string verbatim, or a JSON value
  // written as Python's json.dumps would (see py_json.h).
  std::string arguments;
};

struct ChatMessage {
  std::string role;                    // "system", "user", "assistant" or "tool"
  std::optional<std::string> content;  // nullopt: null or absent
  // Kept for callers' history; no template renders it (R1 and V3.1 instead drop the text up to
  // "</think>" in `content`).
  std::optional<std::string> reasoning_content;
  bool has_tool_calls = false;  // "tool_calls" was given and not null (even if empty)
  std::vector<ToolCall> tool_calls;
  std::optional<std::string> tool_call_id;  // role "tool": the call it answers
  bool prefix = false;  // DeepSeek's prefix completion flag (the V3.1 template reads it)

  // A turn of plain text (the interactive commands' history).
  static ChatMessage text(std::string role, std::string content) {
    ChatMessage m;
    m.role = std::move(role);
    m.content = std::move(content);
    return m;
  }
};

// Parses an OpenAI-style "messages" array ({"role", "content", "tool_calls": [{"id", "type",
// "function": {"name", "arguments"}}], "tool_call_id", "prefix"}). `arguments` may be a JSON
// string (OpenAI) or a JSON value (Hugging Face). Throws dsv3::Error naming the bad message.
std::vector<ChatMessage> chat_messages_from_json(const nlohmann::json& messages);
std::vector<ChatMessage> chat_messages_from_json(const nlohmann::ordered_json& messages);

enum class ChatTemplateKind {
  kDeepSeekV3,       // DeepSeek-V3 / V3-Base: a single tool call is never closed
  kDeepSeekR1,       // R1: V3's, with assistant history cut after the last "</think>"
  kDeepSeekV3_0324,  // V3-0324: user turns open the answer; calls closed, content before calls
  kDeepSeekR1_0528,  // R1-0528: V3-0324's, with assistant history cut after the last "</think>"
  kDeepSeekV31,      // V3.1 (and V3.1-Terminus): `thinking` variable, calls with raw JSON
};

// The variables a request may set for the template (the server's chat_template_kwargs).
struct ChatTemplateArgs {
  bool add_generation_prompt = false;
  bool thinking = false;  // V3.1: the answer opens with "<think>" instead of "<think></think>"
};
// Reads `thinking` (or, as the V3.1 template does, `enable_thinking` when `thinking` is absent)
// from a chat_template_kwargs object with Jinja's truthiness. Throws dsv3::Error if `kwargs` is
// not an object.
bool thinking_from_kwargs(const nlohmann::json& kwargs);
bool thinking_from_kwargs(const nlohmann::ordered_json& kwargs);

class ChatTemplate {
 public:
  // Reads chat_template and bos_token from tokenizer_config.json. Throws dsv3::Error naming the
  // file if it is missing or malformed, or if the template is not one this engine implements.
  static ChatTemplate from_tokenizer_config(const std::filesystem::path& path);
  // Recognises the family of `jinja` from its text (see chat_template.cpp for the markers);
  // throws dsv3::Error naming what is unsupported.
  static ChatTemplate from_template(std::string_view jinja, std::string bos_token);
  // The DeepSeek-V3 template, for callers without a tokenizer_config.json.
  static ChatTemplate deepseek_v3(std::string bos_token = "<｜begin▁of▁sentence｜>");

  // The prompt text; tokenize it with Tokenizer::encode(text) (the BOS is part of the text).
  // Throws dsv3::Error where the Jinja template would fail, e.g. a user turn without content.
  std::string render(std::span<const ChatMessage> messages, const ChatTemplateArgs& args) const;
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    return render(messages, ChatTemplateArgs{add_generation_prompt, false});
  }

  ChatTemplateKind kind() const { return kind_; }
  std::string_view name() const;
  // R1 templates whose generation prompt opens "<think>\n".
  bool opens_think() const { return think_prompt_; }

 private:
  ChatTemplate(ChatTemplateKind kind, bool think_prompt, std::string bos)
      : kind_(kind), think_prompt_(think_prompt), bos_(std::move(bos)) {}
  std::string render_v3(std::span<const ChatMessage> messages, const ChatTemplateArgs& args) const;
  std::string render_v3_0324(std::span<const ChatMessage> messages, const ChatTemplateArgs& args) const;
  std::string render_v31(std::span<const ChatMessage> messages, const ChatTemplateArgs& args) const;
  ChatTemplateKind kind_;
  bool think_prompt_;
  std::string bos_;
};

// True when a rendered prompt leaves the model inside a "<think>" block (R1's "<think>\n", V3.1
// with thinking on), so the answer starts with reasoning.
bool prompt_opens_think(std::string_view prompt);

}  // namespace dsv3
