// Native rendering of DeepSeek-V3's chat_template (see chat_template_known.cpp for the Jinja
// text). The quirks are the template's own and are kept on purpose, since the model was trained
// on them: ns.is_first is never reset, so only the first tool-call turn of a conversation opens
// with <｜Assistant｜><｜tool▁calls▁begin｜>, and only later calls close with <｜tool▁calls▁end｜>.
#include "tokenizer/chat_template.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/chat_template_known.h"

namespace dsv3 {

using nlohmann::json;

namespace {

constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";

std::string replace_once(std::string s, std::string_view from, std::string_view to) {
  const size_t at = s.find(from);
  DSV3_ASSERT(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

// DeepSeek-R1's template is V3's with the assistant content cut after the last "</think>", and
// (in later revisions) "<think>\n" opening the generation prompt.
std::string r1_template(bool think_prompt, std::string_view newline) {
  std::string t = replace_once(
      known_templates::kDeepSeekV3,
      "{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}",
      "{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}"
      "{% set content = content.split('</think>')[-1] %}{% endif %}"
      "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}");
  if (think_prompt) {
    t = replace_once(t, "{{'<｜Assistant｜>'}}{% endif %}",
                     "{{'<｜Assistant｜><think>" + std::string(newline) + "'}}{% endif %}");
  }
  return t;
}

const std::string& required(const ChatMessage& m, size_t index) {
  DSV3_CHECK(m.content.has_value(), "chat template: message ", index, " (", m.role,
             ") has no content");
  return *m.content;
}

}  // namespace

std::vector<ChatMessage> chat_messages_from_json(const json& messages) {
  DSV3_CHECK(messages.is_array(), "chat messages must be a JSON array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    auto where = [&] { return str_cat("chat message ", i, ": "); };
    DSV3_CHECK(m.is_object(), where(), "not an object");
    DSV3_CHECK(m.contains("role") && m["role"].is_string(), where(), "\"role\" must be a string");
    ChatMessage msg;
    msg.role = m["role"].get<std::string>();
    if (m.contains("content") && !m["content"].is_null()) {
      DSV3_CHECK(m["content"].is_string(), where(), "\"content\" must be a string or null");
      msg.content = m["content"].get<std::string>();
    }
    for (const char* key : {"reasoning_content", "reasoning"}) {
      if (m.contains(key) && m[key].is_string()) msg.reasoning_content = m[key].get<std::string>();
    }
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      DSV3_CHECK(m["tool_calls"].is_array(), where(), "\"tool_calls\" must be an array");
      for (const json& tc : m["tool_calls"]) {
        ToolCall call;
        DSV3_CHECK(tc.is_object() && tc.contains("function") && tc["function"].is_object(), where(),
                   "each tool call needs a \"function\" object");
        if (tc.contains("type")) call.type = tc["type"].get<std::string>();
        const json& f = tc["function"];
        DSV3_CHECK(f.contains("name") && f["name"].is_string(), where(),
                   "tool call function needs a string \"name\"");
        DSV3_CHECK(f.contains("arguments") && f["arguments"].is_string(), where(),
                   "tool call \"arguments\" must be a JSON string (as in the OpenAI API)");
        call.name = f["name"].get<std::string>();
        call.arguments = f["arguments"].get<std::string>();
        msg.tool_calls.push_back(std::move(call));
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

ChatTemplate ChatTemplate::deepseek_v3(std::string bos_token) {
  return ChatTemplate(ChatTemplateKind::kDeepSeekV3, false, std::move(bos_token));
}

ChatTemplate ChatTemplate::from_template(std::string_view jinja, std::string bos_token) {
  if (jinja == known_templates::kDeepSeekV3) return deepseek_v3(std::move(bos_token));
  for (const bool think : {false, true}) {
    for (const std::string_view nl : {"\n", "\\n"}) {
      if (jinja == r1_template(think, nl)) {
        return ChatTemplate(ChatTemplateKind::kDeepSeekR1, think, std::move(bos_token));
      }
    }
  }
  if (jinja.find("is_last_user") != std::string_view::npos &&
      jinja.find("</think>") != std::string_view::npos) {
    fail(
        "unsupported chat template: DeepSeek-V3.1-style thinking/non-thinking templates are "
        "not implemented (supported: DeepSeek-V3, DeepSeek-R1)");
  }
  fail("unsupported chat template: not the DeepSeek-V3 or DeepSeek-R1 template (", jinja.size(),
       " characters); a template is recognised only when it matches exactly");
}

ChatTemplate ChatTemplate::from_tokenizer_config(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in, path.string(), ": cannot open (missing file?)");
  std::stringstream ss;
  ss << in.rdbuf();
  json cfg;
  try {
    cfg = json::parse(ss.str());
  } catch (const json::parse_error& e) {
    fail(path.string(), ": not valid JSON: ", e.what());
  }
  DSV3_CHECK(cfg.is_object() && cfg.contains("chat_template") && cfg["chat_template"].is_string(),
             path.string(), ": no \"chat_template\" string");
  std::string bos;
  if (cfg.contains("bos_token") && cfg["bos_token"].is_string()) {
    bos = cfg["bos_token"].get<std::string>();
  } else if (cfg.contains("bos_token") && cfg["bos_token"].is_object()) {
    bos = cfg["bos_token"].value("content", "");
  }
  DSV3_CHECK(!bos.empty(), path.string(), ": no \"bos_token\"");
  try {
    return from_template(cfg["chat_template"].get<std::string>(), bos);
  } catch (const Error& e) {
    fail(path.string(), ": ", e.what());
  }
}

std::string_view ChatTemplate::name() const {
  return kind_ == ChatTemplateKind::kDeepSeekV3 ? "DeepSeek-V3" : "DeepSeek-R1";
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) const {
  std::string system;
  bool first_system = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "system") continue;
    if (!first_system) system += "\n\n";
    system += required(messages[i], i);
    first_system = false;
  }
  std::string out = bos_ + system;
  bool is_first = false;  // a tool call has been rendered (never reset: the template's quirk)
  bool is_tool = false;   // inside a run of tool outputs
  bool is_output_first = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      is_tool = false;
      out += "<｜User｜>";
      out += required(m, i);
    } else if (m.role == "assistant" && !m.content) {
      is_tool = false;
      for (const ToolCall& tc : m.tool_calls) {
        const std::string call = tc.type + "<｜tool▁sep｜>" + tc.name + "\n```json\n" +
                                 tc.arguments + "\n```<｜tool▁call▁end｜>";
        if (!is_first) {
          out += "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>" + call;
          is_first = true;
        } else {
          out += "\n<｜tool▁call▁begin｜>" + call + "<｜tool▁calls▁end｜>";
          out += kEos;
        }
      }
    } else if (m.role == "assistant") {
      if (is_tool) {
        out += "<｜tool▁outputs▁end｜>" + *m.content;
        is_tool = false;
      } else {
        std::string_view content = *m.content;
        if (kind_ == ChatTemplateKind::kDeepSeekR1) {
          const size_t at = content.rfind("</think>");
          if (at != std::string_view::npos) content.remove_prefix(at + 8);
        }
        out += "<｜Assistant｜>";
        out += content;
      }
      out += kEos;
    } else if (m.role == "tool") {
      is_tool = true;
      out += is_output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
                             : "\n<｜tool▁output▁begin｜>";
      out += required(m, i);
      out += "<｜tool▁output▁end｜>";
      is_output_first = false;
    }
    // Other roles render nothing, as in the template.
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (add_generation_prompt && !is_tool) {
    out += "<｜Assistant｜>";
    if (think_prompt_) out += "<think>\n";
  }
  return out;
}

}  // namespace dsv3
