// Native rendering of DeepSeek's chat templates, one function per template family, each a
// line-by-line transcription of its Jinja source (chat_template_known.cpp holds V3's; V3.1's is
// testdata/templates/deepseek-v3.1.jinja; V3-0324's is quoted in testdata/templates/README.md).
// The quirks are the templates' own and are kept on purpose, since the models were trained on
// them: e.g. in V3's ns.is_first is never reset, so only the first tool-call turn of a
// conversation opens with <｜Assistant｜><｜tool▁calls▁begin｜>, and only later calls close.
#include "tokenizer/chat_template.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/chat_template_known.h"
#include "tokenizer/py_json.h"

namespace dsv3 {

using nlohmann::json;

namespace {

constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";

const std::string& required(const std::optional<std::string>& content, const ChatMessage& m, size_t index) {
  DSV3_CHECK(content.has_value(), "chat template: message ", index, " (", m.role, ") has no content");
  return *content;
}
const std::string& required(const ChatMessage& m, size_t index) { return required(m.content, m, index); }

// Jinja's truthiness of a JSON value.
template <typename Json>
bool truthy(const Json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.template get<bool>();
  if (v.is_number_integer()) return v.template get<int64_t>() != 0;
  if (v.is_number_float()) return v.template get<double>() != 0.0;
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  return true;
}

// Every template joins the system messages with a blank line, wherever they stand.
std::string system_prompt(std::span<const ChatMessage> messages) {
  std::string system;
  bool first = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "system") continue;
    if (!first) system += "\n\n";
    system += required(messages[i], i);
    first = false;
  }
  return system;
}

// V3's fenced call: "function<｜tool▁sep｜>name\n```json\n{...}\n```<｜tool▁call▁end｜>".
std::string fenced_call(const ToolCall& tc) {
  return tc.type + "<｜tool▁sep｜>" + tc.name + "\n```json\n" + tc.arguments + "\n```<｜tool▁call▁end｜>";
}

// V3.1's "name<｜tool▁sep｜>{...}<｜tool▁call▁end｜>": the arguments go through `tojson`, so the
// OpenAI string form is parsed first (as vLLM and the model card do) and written back as
// Python's json.dumps writes it.
std::string raw_json_call(const ToolCall& tc, size_t index) {
  nlohmann::ordered_json args = nlohmann::ordered_json::parse(tc.arguments, nullptr, false);
  DSV3_CHECK(!args.is_discarded(), "chat template: message ", index, ": the arguments of tool call '", tc.name,
             "' are not valid JSON");
  return tc.name + "<｜tool▁sep｜>" + python_json_dumps(args) + "<｜tool▁call▁end｜>";
}

// Python's s.split(sep, 1)[1] / s.split(sep)[-1]: the text after the first / last `sep`.
std::string_view after_first(std::string_view s, std::string_view sep) {
  const size_t at = s.find(sep);
  return at == std::string_view::npos ? s : s.substr(at + sep.size());
}
std::string_view after_last(std::string_view s, std::string_view sep) {
  const size_t at = s.rfind(sep);
  return at == std::string_view::npos ? s : s.substr(at + sep.size());
}

// The template text with all whitespace removed, so markers match whatever the line breaks
// and spacing of a given tokenizer_config.json.
std::string squeeze(std::string_view s) {
  std::string out;
  for (const char c : s)
    if (c != ' ' && c != '\n' && c != '\t' && c != '\r') out += c;
  return out;
}

}  // namespace

namespace {

template <typename Json>
std::vector<ChatMessage> messages_from_json(const Json& messages) {
  DSV3_CHECK(messages.is_array(), "chat messages must be a JSON array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    auto where = [&] { return str_cat("chat message ", i, ": "); };
    DSV3_CHECK(m.is_object(), where(), "not an object");
    DSV3_CHECK(m.contains("role") && m["role"].is_string(), where(), "\"role\" must be a string");
    ChatMessage msg;
    msg.role = m["role"].template get<std::string>();
    if (m.contains("content") && !m["content"].is_null()) {
      DSV3_CHECK(m["content"].is_string(), where(), "\"content\" must be a string or null");
      msg.content = m["content"].template get<std::string>();
    }
    for (const char* key : {"reasoning_content", "reasoning"}) {
      if (m.contains(key) && m[key].is_string()) msg.reasoning_content = m[key].template get<std::string>();
    }
    if (m.contains("tool_call_id") && !m["tool_call_id"].is_null()) {
      DSV3_CHECK(m["tool_call_id"].is_string(), where(), "\"tool_call_id\" must be a string");
      msg.tool_call_id = m["tool_call_id"].template get<std::string>();
    }
    if (m.contains("prefix")) msg.prefix = truthy(m["prefix"]);
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      DSV3_CHECK(m["tool_calls"].is_array(), where(), "\"tool_calls\" must be an array");
      msg.has_tool_calls = true;
      for (const Json& tc : m["tool_calls"]) {
        ToolCall call;
        DSV3_CHECK(tc.is_object() && tc.contains("function") && tc["function"].is_object(), where(),
                   "each tool call needs a \"function\" object");
        if (tc.contains("type")) {
          DSV3_CHECK(tc["type"].is_string(), where(), "tool call \"type\" must be a string");
          call.type = tc["type"].template get<std::string>();
        }
        if (tc.contains("id") && tc["id"].is_string()) call.id = tc["id"].template get<std::string>();
        const Json& f = tc["function"];
        DSV3_CHECK(f.contains("name") && f["name"].is_string(), where(), "tool call function needs a string \"name\"");
        DSV3_CHECK(f.contains("arguments") && !f["arguments"].is_null(), where(),
                   "tool call function needs \"arguments\" (a JSON string, or a JSON value)");
        call.name = f["name"].template get<std::string>();
        const Json& args = f["arguments"];
        call.arguments = args.is_string() ? args.template get<std::string>()
                                          : python_json_dumps(nlohmann::ordered_json::parse(args.dump()));
        msg.tool_calls.push_back(std::move(call));
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace

std::vector<ChatMessage> chat_messages_from_json(const json& messages) { return messages_from_json(messages); }
std::vector<ChatMessage> chat_messages_from_json(const nlohmann::ordered_json& messages) {
  return messages_from_json(messages);
}

namespace {
template <typename Json>
bool thinking_from(const Json& kwargs) {
  if (kwargs.is_null()) return false;
  DSV3_CHECK(kwargs.is_object(), "chat_template_kwargs must be a JSON object");
  if (kwargs.contains("thinking")) return truthy(kwargs["thinking"]);
  if (kwargs.contains("enable_thinking")) return truthy(kwargs["enable_thinking"]);
  return false;
}
}  // namespace

bool thinking_from_kwargs(const json& kwargs) { return thinking_from(kwargs); }
bool thinking_from_kwargs(const nlohmann::ordered_json& kwargs) { return thinking_from(kwargs); }

bool prompt_opens_think(std::string_view prompt) {
  return prompt.ends_with("<think>") || prompt.ends_with("<think>\n");
}

ChatTemplate ChatTemplate::deepseek_v3(std::string bos_token) {
  return ChatTemplate(ChatTemplateKind::kDeepSeekV3, false, std::move(bos_token));
}

// The families differ in a few places, each recognisable by a fragment of its source (matched
// with whitespace removed):
//   tool-call syntax   V3.1: "name<｜tool▁sep｜>" + arguments|tojson; the others: "type<｜tool▁sep｜>
//                      name" and a ```json fence;
//   answer opening     V3-0324 and R1-0528 (is_last_user): each user turn ends with <｜Assistant｜>;
//                      V3 and R1: the assistant turn writes it;
//   history            R1 and R1-0528: assistant content cut with split('</think>')[-1];
//   generation prompt  R1 (later revisions): "<｜Assistant｜><think>\n".
// Anything else (other models' templates, DeepSeek variants with other switches) is refused
// rather than rendered approximately.
ChatTemplate ChatTemplate::from_template(std::string_view jinja, std::string bos_token) {
  const std::string s = squeeze(jinja);
  auto has = [&](std::string_view frag) { return s.find(frag) != std::string::npos; };
  DSV3_CHECK(has("<｜User｜>") && has("<｜Assistant｜>") && has("<｜end▁of▁sentence｜>"),
             "unsupported chat template: not a DeepSeek chat template (no <｜User｜>/<｜Assistant｜> turns; ",
             jinja.size(), " characters)");
  const bool raw_json_calls = has("+'<｜tool▁sep｜>'+tool['function']['arguments']|tojson");
  const bool fenced_calls = has("tool['type']+'<｜tool▁sep｜>'+tool['function']['name']") && has("```json");
  const bool strips = has("split('</think>')[-1]");
  const bool think_prompt = jinja.find("<｜Assistant｜><think>\n") != std::string_view::npos ||
                            jinja.find("<｜Assistant｜><think>\\n") != std::string_view::npos;
  if (raw_json_calls && !fenced_calls) {
    DSV3_CHECK(has("<think></think>") && has("split('</think>',1)[1]") && !strips && !think_prompt,
               "unsupported chat template: a DeepSeek-V3.1-style template (raw JSON tool calls) without V3.1's "
               "thinking switch");
    return ChatTemplate(ChatTemplateKind::kDeepSeekV31, false, std::move(bos_token));
  }
  DSV3_CHECK(fenced_calls && !raw_json_calls,
             "unsupported chat template: DeepSeek turn markers, but a tool-call format that is neither V3's "
             "(fenced JSON) nor V3.1's (raw JSON)");
  DSV3_CHECK(!has("enable_thinking") && !has("<think></think>"),
             "unsupported chat template: a V3-style template with a thinking switch (enable_thinking) is not one "
             "DeepSeek published");
  if (has("is_last_user")) {
    DSV3_CHECK(has("'<｜User｜>'+message['content']+'<｜Assistant｜>'") || has("'<｜User｜>'+content+'<｜Assistant｜>'"),
               "unsupported chat template: a V3-0324-style template (is_last_user) whose user turns do not end "
               "with <｜Assistant｜>");
    DSV3_CHECK(!think_prompt, "unsupported chat template: a V3-0324-style template that opens <think>");
    return ChatTemplate(strips ? ChatTemplateKind::kDeepSeekR1_0528 : ChatTemplateKind::kDeepSeekV3_0324, false,
                        std::move(bos_token));
  }
  return ChatTemplate(strips ? ChatTemplateKind::kDeepSeekR1 : ChatTemplateKind::kDeepSeekV3, think_prompt,
                      std::move(bos_token));
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
  switch (kind_) {
    case ChatTemplateKind::kDeepSeekV3: return "DeepSeek-V3";
    case ChatTemplateKind::kDeepSeekR1: return "DeepSeek-R1";
    case ChatTemplateKind::kDeepSeekV3_0324: return "DeepSeek-V3-0324";
    case ChatTemplateKind::kDeepSeekR1_0528: return "DeepSeek-R1-0528";
    case ChatTemplateKind::kDeepSeekV31: return "DeepSeek-V3.1";
  }
  return "DeepSeek";
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, const ChatTemplateArgs& args) const {
  switch (kind_) {
    case ChatTemplateKind::kDeepSeekV3:
    case ChatTemplateKind::kDeepSeekR1: return render_v3(messages, args);
    case ChatTemplateKind::kDeepSeekV3_0324:
    case ChatTemplateKind::kDeepSeekR1_0528: return render_v3_0324(messages, args);
    case ChatTemplateKind::kDeepSeekV31: return render_v31(messages, args);
  }
  DSV3_ASSERT(false);
}

// DeepSeek-V3 and R1 (chat_template_known.cpp).
std::string ChatTemplate::render_v3(std::span<const ChatMessage> messages, const ChatTemplateArgs& args) const {
  std::string out = bos_ + system_prompt(messages);
  bool is_first = false;  // a tool call has been rendered (never reset: the template's quirk)
  bool is_tool = false;   // inside a run of tool outputs
  bool is_output_first = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      is_tool = false;
      out += "<｜User｜>" + required(m, i);
    } else if (m.role == "assistant" && !m.content) {
      DSV3_CHECK(m.has_tool_calls, "chat template: message ", i, " (assistant) has neither content nor tool_calls");
      is_tool = false;
      for (const ToolCall& tc : m.tool_calls) {
        if (!is_first) {
          out += "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>" + fenced_call(tc);
          is_first = true;
        } else {
          out += "\n<｜tool▁call▁begin｜>" + fenced_call(tc) + "<｜tool▁calls▁end｜>";
          out += kEos;
        }
      }
    } else if (m.role == "assistant") {
      if (is_tool) {
        out += "<｜tool▁outputs▁end｜>" + *m.content;
        is_tool = false;
      } else {
        std::string_view content = *m.content;
        if (kind_ == ChatTemplateKind::kDeepSeekR1) content = after_last(content, "</think>");
        out += "<｜Assistant｜>";
        out += content;
      }
      out += kEos;
    } else if (m.role == "tool") {
      is_tool = true;
      out += is_output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" : "\n<｜tool▁output▁begin｜>";
      out += required(m, i) + "<｜tool▁output▁end｜>";
      is_output_first = false;
    }
    // Other roles render nothing, as in every template.
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (args.add_generation_prompt && !is_tool) {
    out += "<｜Assistant｜>";
    if (think_prompt_) out += "<think>\n";
  }
  return out;
}

// DeepSeek-V3-0324 and R1-0528 (source in testdata/templates/README.md): user turns end with
// <｜Assistant｜>; a tool-call turn writes its content, then every call, and always closes;
// consecutive tool outputs are joined by a newline.
std::string ChatTemplate::render_v3_0324(std::span<const ChatMessage> messages, const ChatTemplateArgs& args) const {
  const bool r1 = kind_ == ChatTemplateKind::kDeepSeekR1_0528;
  std::string out = bos_ + system_prompt(messages);
  bool is_tool = false, is_output_first = true, is_last_user = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    std::optional<std::string> content = m.content;
    if (m.role == "user") {
      is_tool = false;
      is_last_user = true;
      out += "<｜User｜>" + required(m, i) + "<｜Assistant｜>";
    }
    if (r1 && m.role == "assistant") {  // R1-0528 tests '</think>' in content, which fails on None
      content = std::string(after_last(required(m, i), "</think>"));
    }
    if (m.role == "assistant" && m.has_tool_calls) {
      is_last_user = false;
      if (is_tool) out += "<｜tool▁outputs▁end｜>";
      is_tool = false;
      is_output_first = true;
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        if (k == 0) {
          out += content.value_or("") + "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>" + fenced_call(m.tool_calls[k]);
        } else {
          out += "\n<｜tool▁call▁begin｜>" + fenced_call(m.tool_calls[k]);
        }
      }
      out += "<｜tool▁calls▁end｜>";
      out += kEos;
    } else if (m.role == "assistant") {
      is_last_user = false;
      if (is_tool) {
        out += "<｜tool▁outputs▁end｜>" + required(content, m, i);
        is_tool = false;
      } else {
        out += required(content, m, i);
      }
      out += kEos;
    }
    if (m.role == "tool") {
      is_last_user = false;
      is_tool = true;
      out += is_output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" : "\n<｜tool▁output▁begin｜>";
      out += required(m, i) + "<｜tool▁output▁end｜>";
      is_output_first = false;
    }
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (args.add_generation_prompt && !is_last_user && !is_tool) out += "<｜Assistant｜>";
  return out;
}

// DeepSeek-V3.1 (testdata/templates/deepseek-v3.1.jinja): every answer opens with
// "<think></think>" (or "<think>" for the generation prompt with thinking on); replayed answers
// lose their text up to the first "</think>"; calls are "name<｜tool▁sep｜>{json}" with no
// separator between them; tool outputs have no plural wrapper and no generation prompt follows.
std::string ChatTemplate::render_v31(std::span<const ChatMessage> messages, const ChatTemplateArgs& args) const {
  std::string out = bos_ + system_prompt(messages);
  bool is_tool = false, is_last_user = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool calls = !m.tool_calls.empty();  // Jinja truthiness of message['tool_calls']
    if (m.role == "user") {
      is_tool = false;
      is_last_user = true;
      out += "<｜User｜>" + required(m, i);
    }
    if (m.role == "assistant" && calls) {
      if (is_last_user) out += "<｜Assistant｜><think></think>";
      is_last_user = false;
      is_tool = false;
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        if (k == 0) out += m.content.value_or("") + "<｜tool▁calls▁begin｜>";
        out += "<｜tool▁call▁begin｜>" + raw_json_call(m.tool_calls[k], i);
      }
      out += "<｜tool▁calls▁end｜>";
      out += kEos;
    }
    if (m.role == "assistant" && !calls) {
      if (is_last_user) out += (m.prefix && args.thinking) ? "<｜Assistant｜><think>" : "<｜Assistant｜><think></think>";
      is_last_user = false;
      const std::string& content = required(m, i);
      if (is_tool) {
        out += content;
        is_tool = false;
      } else {
        out += after_first(content, "</think>");
      }
      out += kEos;
    }
    if (m.role == "tool") {
      is_last_user = false;
      is_tool = true;
      out += "<｜tool▁output▁begin｜>" + required(m, i) + "<｜tool▁output▁end｜>";
    }
  }
  if (args.add_generation_prompt && is_last_user && !is_tool)
    out += args.thinking ? "<｜Assistant｜><think>" : "<｜Assistant｜><think></think>";
  return out;
}

}  // namespace dsv3
