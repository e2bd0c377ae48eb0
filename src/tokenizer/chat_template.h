// DeepSeek's conversation format rendered natively (no Jinja engine): the `chat_template` of
// tokenizer_config.json, re-implemented for the templates we recognise, byte for byte.
#pragma once
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

struct ToolCall {
  std::string type = "function";
  std::string name;
  std::string arguments;  // a JSON text, inserted verbatim
};

struct ChatMessage {
  std::string role;                    // "system", "user", "assistant" or "tool"
  std::optional<std::string> content;  // nullopt for an assistant turn that only calls tools
  // Kept for callers' history; the V3 and R1 templates do not render it (R1 instead drops
  // anything up to "</think>" in `content`).
  std::optional<std::string> reasoning_content;
  std::vector<ToolCall> tool_calls;
};

// Parses an OpenAI-style "messages" array ({"role", "content", "tool_calls": [{"type",
// "function": {"name", "arguments"}}]}). Throws dsv3::Error saying which message is malformed.
std::vector<ChatMessage> chat_messages_from_json(const nlohmann::json& messages);

enum class ChatTemplateKind {
  kDeepSeekV3,  // DeepSeek-V3 / V3-Base
  kDeepSeekR1,  // R1: assistant history loses its "...</think>" part
};

class ChatTemplate {
 public:
  // Reads chat_template and bos_token from tokenizer_config.json. Throws dsv3::Error naming the
  // file if it is missing or malformed, or if the template is not one this engine implements
  // ("unsupported chat template", with the family when it is recognisable, e.g. V3.1).
  static ChatTemplate from_tokenizer_config(const std::filesystem::path& path);
  // Identifies `jinja` among the known templates; throws dsv3::Error if unsupported.
  static ChatTemplate from_template(std::string_view jinja, std::string bos_token);
  // The DeepSeek-V3 template, for callers without a tokenizer_config.json.
  static ChatTemplate deepseek_v3(std::string bos_token = "<｜begin▁of▁sentence｜>");

  // The prompt text; tokenize it with Tokenizer::encode(text) (the BOS is part of the text).
  // Throws dsv3::Error where the Jinja template would fail, e.g. a user turn without content.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  ChatTemplateKind kind() const { return kind_; }
  std::string_view name() const;
  // R1 templates open the answer with "<think>\n" when adding the generation prompt.
  bool opens_think() const { return think_prompt_; }

 private:
  ChatTemplate(ChatTemplateKind kind, bool think_prompt, std::string bos)
      : kind_(kind), think_prompt_(think_prompt), bos_(std::move(bos)) {}
  ChatTemplateKind kind_;
  bool think_prompt_;
  std::string bos_;
};

}  // namespace dsv3
