#include "server/task.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <limits>
#include <mutex>
#include <random>

#include "core/error.h"
#include "server/structured.h"
#include "tokenizer/utf8.h"

namespace dsv3::server {

namespace {

ApiError bad(const std::string& msg, const std::string& param = {}, const std::string& code = {}) {
  return ApiError(400, msg, "invalid_request_error", param, code);
}

json parse_body(const std::string& body) {
  if (const size_t bad_at = utf8::first_invalid(body); bad_at != body.size())
    throw bad(str_cat("The request body is not valid UTF-8 (at byte ", bad_at, ")."), {}, "invalid_encoding");
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // also catches invalid UTF-8 inside strings
    throw bad(str_cat("We could not parse the JSON body of your request: ", e.what()), {}, "invalid_json");
  }
  if (!j.is_object()) throw bad("The request body must be a JSON object.", {}, "invalid_json");
  return j;
}

// The value of `key`, or null when absent or null.
const json* opt(const json& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() || it->is_null() ? nullptr : &*it;
}

[[noreturn]] void wrong_type(const char* key, const char* want, const json& v) {
  throw bad(str_cat("Invalid type for '", key, "': expected ", want, ", but got ", v.type_name(), " instead."), key,
            "invalid_type");
}

double number(const json& o, const char* key, double def, double lo, double hi) {
  const json* v = opt(o, key);
  if (!v) return def;
  if (!v->is_number()) wrong_type(key, "a number", *v);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    throw bad(str_cat("Invalid value for '", key, "': ", x, " is not in [", lo, ", ", hi, "]."), key, "invalid_value");
  return x;
}

std::optional<int64_t> integer(const json& o, const char* key, int64_t lo, int64_t hi) {
  const json* v = opt(o, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) wrong_type(key, "an integer", *v);
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    throw bad(str_cat("Invalid value for '", key, "': too large."), key, "invalid_value");
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    throw bad(str_cat("Invalid value for '", key, "': ", x, " is not in [", lo, ", ", hi, "]."), key, "invalid_value");
  return x;
}

bool boolean(const json& o, const char* key, bool def) {
  const json* v = opt(o, key);
  if (!v) return def;
  if (!v->is_boolean()) wrong_type(key, "a boolean", *v);
  return v->get<bool>();
}

// Sampling, stop strings, n, streaming options and unsupported features shared by both endpoints.
void parse_common(const json& j, CompletionTask& t, int64_t vocab) {
  if (const json* m = opt(j, "model"); m && !m->is_string()) wrong_type("model", "a string", *m);
  SamplingParams& s = t.gen.sampling;
  s.temperature = float(number(j, "temperature", 1.0, 0.0, 2.0));
  s.top_p = float(number(j, "top_p", 1.0, 0.0, 1.0));
  if (s.top_p <= 0.0f) throw bad("Invalid value for 'top_p': must be greater than 0.", "top_p", "invalid_value");
  s.top_k = int(integer(j, "top_k", -1, 1 << 30).value_or(0));
  if (s.top_k < 0) s.top_k = 0;  // -1 means off, as in vLLM
  s.min_p = float(number(j, "min_p", 0.0, 0.0, 1.0));
  if (auto seed = integer(j, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    s.seed = uint64_t(*seed);
  else
    s.seed = std::random_device{}();
  t.n = int(integer(j, "n", 1, kMaxChoices).value_or(1));
  if (const json* st = opt(j, "stop")) {
    if (st->is_string()) {
      t.gen.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      if (st->size() > 16) throw bad("At most 16 stop sequences are supported.", "stop", "invalid_value");
      for (const json& x : *st) {
        if (!x.is_string()) wrong_type("stop", "a string or an array of strings", *st);
        t.gen.stop.push_back(x.get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or an array of strings", *st);
    }
  }
  t.gen.stop_at_eos = !boolean(j, "ignore_eos", false);  // vLLM extensions
  t.gen.skip_special = boolean(j, "skip_special_tokens", true);
  t.stream = boolean(j, "stream", false);
  if (const json* so = opt(j, "stream_options")) {
    if (!so->is_object()) wrong_type("stream_options", "an object", *so);
    if (!t.stream)
      throw bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options",
                "invalid_value");
    t.include_usage = boolean(*so, "include_usage", false);
  }
  s.presence_penalty = float(number(j, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = float(number(j, "frequency_penalty", 0.0, -2.0, 2.0));
  if (const json* lb = opt(j, "logit_bias")) {  // {"token id": bias in [-100, 100]}
    if (!lb->is_object()) wrong_type("logit_bias", "an object mapping token ids to numbers", *lb);
    if (lb->size() > 300) throw bad("'logit_bias' may hold at most 300 tokens.", "logit_bias", "invalid_value");
    for (const auto& [key, v] : lb->items()) {
      int64_t id = -1;
      const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
      if (ec != std::errc() || end != key.data() + key.size() || id < 0 || id >= vocab)
        throw bad(str_cat("Invalid key in 'logit_bias': '", key, "' is not a token id in [0, ", vocab, ")."),
                  "logit_bias", "invalid_value");
      if (!v.is_number() || !(v.get<double>() >= -100 && v.get<double>() <= 100))
        throw bad(str_cat("Invalid value in 'logit_bias' for token ", key, ": must be a number in [-100, 100]."),
                  "logit_bias", "invalid_value");
      s.logit_bias.push_back({int32_t(id), float(v.get<double>())});
    }
  }
}

// max_tokens (or max_completion_tokens) against the room the prompt leaves.
void parse_max_tokens(const json& j, CompletionTask& t, int64_t ctx_size, int64_t def) {
  const int64_t n_prompt = int64_t(t.gen.prompt.size());
  if (n_prompt >= ctx_size)
    throw bad(str_cat("This model's maximum context length is ", ctx_size, " tokens. However, your prompt has ",
                      n_prompt, " tokens. Please reduce the length of the prompt."),
              t.chat ? "messages" : "prompt", "context_length_exceeded");
  std::optional<int64_t> m = integer(j, "max_completion_tokens", std::numeric_limits<int64_t>::min(),
                                     std::numeric_limits<int64_t>::max());
  const char* key = "max_completion_tokens";
  if (!m) {
    m = integer(j, "max_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    key = "max_tokens";
  }
  if (m && *m <= 0)
    throw bad(str_cat("Invalid value for '", key, "': ", *m, ". It must be at least 1."), key, "invalid_value");
  if (m && *m > ctx_size - n_prompt)
    throw bad(str_cat("This model's maximum context length is ", ctx_size, " tokens. However, you requested ",
                      n_prompt + *m, " tokens (", n_prompt, " in the prompt, ", *m,
                      " for the completion). Please reduce the prompt or '", key, "'."),
              key, "context_length_exceeded");
  t.gen.max_tokens = m ? *m : std::min(def, ctx_size - n_prompt);
}

std::vector<int32_t> encode(const TaskContext& ctx, const std::string& text, bool add_special) {
  try {
    return ctx.tokenizer.encode(text, add_special);
  } catch (const Error& e) {
    throw bad(str_cat("Could not tokenize the prompt: ", e.what()));
  }
}

// OpenAI message content: a string, or an array of {"type": "text", "text": ...} parts.
json normalise_content(const json& c, size_t i) {
  if (c.is_null() || c.is_string()) return c;
  const std::string param = str_cat("messages[", i, "].content");
  if (!c.is_array()) wrong_type(param.c_str(), "a string or an array of content parts", c);
  std::string text;
  for (const json& part : c) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
        !part["text"].is_string())
      throw bad(str_cat("Invalid content part in messages[", i, "]: only {\"type\": \"text\", \"text\": string} parts ",
                        "are supported."),
                param, "invalid_value");
    text += part["text"].get<std::string>();
  }
  return text;
}

// The thinking switch of the V3.1 template: chat_template_kwargs {"thinking": true} (vLLM's and
// SGLang's way; "enable_thinking" too), or DeepSeek's API spelling "thinking": {"type":
// "enabled"}. Off when neither is given.
bool thinking_requested(const json& j) {
  bool on = false;
  if (const json* kw = opt(j, "chat_template_kwargs")) {
    if (!kw->is_object()) wrong_type("chat_template_kwargs", "an object", *kw);
    on = thinking_from_kwargs(*kw);
  }
  if (const json* th = opt(j, "thinking")) {
    const json* type = th->is_object() ? opt(*th, "type") : nullptr;
    if (!type || (*type != "enabled" && *type != "disabled"))
      throw bad("Invalid value for 'thinking': expected {\"type\": \"enabled\"} or {\"type\": \"disabled\"}.",
                "thinking", "invalid_value");
    on = *type == "enabled";
  }
  return on;
}

// tools, tool_choice and parallel_tool_calls. `body` is parsed again in order, so each tool's
// parameters reach the prompt with the keys as the client wrote them.
ToolTask parse_tools(const json& j, const std::string& body, const TaskContext& ctx, bool thinking) {
  ToolTask t;
  const json* tools = opt(j, "tools");
  if (tools && !tools->is_array()) wrong_type("tools", "an array", *tools);
  if (tools && !tools->empty()) {
    try {
      t.tools = tool_definitions_from_json(nlohmann::ordered_json::parse(body)["tools"]);
    } catch (const Error& e) {
      throw bad(str_cat("Invalid 'tools': ", e.what()), "tools", "invalid_value");
    }
    t.choice = ToolChoice::kAuto;
  }
  if (const json* c = opt(j, "tool_choice")) {
    if (c->is_string() && (*c == "none" || *c == "auto" || *c == "required")) {
      t.choice = *c == "none" ? ToolChoice::kNone : *c == "auto" ? ToolChoice::kAuto : ToolChoice::kRequired;
    } else if (c->is_object() && c->value("type", json()) == "function" && c->contains("function") &&
               (*c)["function"].is_object() && (*c)["function"].value("name", json()).is_string()) {
      t.choice = ToolChoice::kFunction;
      t.function = (*c)["function"]["name"].get<std::string>();
      if (std::none_of(t.tools.begin(), t.tools.end(), [&](const ToolDefinition& d) { return d.name == t.function; }))
        throw bad(str_cat("Invalid value for 'tool_choice': no tool named '", t.function, "' is in 'tools'."),
                  "tool_choice", "invalid_value");
    } else {
      throw bad("Invalid value for 'tool_choice': expected \"none\", \"auto\", \"required\" or {\"type\": "
                "\"function\", \"function\": {\"name\": string}}.",
                "tool_choice", "invalid_value");
    }
    if (t.choice != ToolChoice::kNone && t.tools.empty())
      throw bad("'tool_choice' is only allowed when 'tools' are specified.", "tool_choice", "invalid_value");
  }
  t.parallel = boolean(j, "parallel_tool_calls", true);
  if (!t.parse()) {
    t.tools.clear();  // tool_choice "none": the prompt declares no tools, the answer is text
    return t;
  }
  // DeepSeek-V3.1's model card: tool calls are supported in non-thinking mode only.
  if (thinking && ctx.chat_template.kind() == ChatTemplateKind::kDeepSeekV31)
    throw bad("DeepSeek-V3.1 calls tools only with thinking off (its model card: tool calls are supported in "
              "non-thinking mode); drop the thinking switch, or send tool_choice \"none\".",
              "tools", "unsupported_parameter");
  t.syntax = tool_call_syntax(ctx.chat_template.kind());
  const auto ids = tool_call_tokens(t.syntax, ctx.tokenizer);
  if (!ids)
    throw bad("This model's tokenizer lacks the tool-call tokens (<｜tool▁calls▁begin｜> ...), so it cannot call tools.",
              "tools", "unsupported_parameter");
  t.ids = *ids;
  return t;
}

// Every tool message's tool_call_id names a call of an earlier assistant message.
void check_tool_call_ids(const std::vector<ChatMessage>& messages) {
  std::vector<std::string> calls;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    for (const ToolCall& c : m.tool_calls)
      if (!c.id.empty()) calls.push_back(c.id);
    if (m.role == "tool" && m.tool_call_id && std::find(calls.begin(), calls.end(), *m.tool_call_id) == calls.end())
      throw bad(str_cat("Invalid 'messages[", i, "].tool_call_id': '", *m.tool_call_id,
                        "' matches no tool call of an earlier assistant message."),
                str_cat("messages[", i, "].tool_call_id"), "invalid_value");
  }
}

// The "## Tools" block at the end of the system prompt (a system message is added first when
// there is none), as DeepSeek-V3.1's model card lays it out.
void add_tool_prompt(std::vector<ChatMessage>& messages, const ChatTemplate& tmpl, const ToolTask& tools) {
  const std::string block = tool_system_prompt(tmpl.kind(), tools.tools);
  if (!messages.empty() && messages.front().role == "system") {
    std::string& c = messages.front().content.emplace(messages.front().content.value_or(""));
    c += c.empty() ? block : "\n\n" + block;
  } else {
    ChatMessage sys;
    sys.role = "system";
    sys.content = block;
    messages.insert(messages.begin(), std::move(sys));
  }
}

}  // namespace

json error_json(const ApiError& e) {
  return {{"error",
           {{"message", e.what()},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

CompletionTask parse_chat_request(const std::string& body, const TaskContext& ctx) {
  const json j = parse_body(body);
  CompletionTask t;
  t.chat = true;
  const json* msgs = opt(j, "messages");
  if (!msgs) throw bad("Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
  if (!msgs->is_array()) wrong_type("messages", "an array", *msgs);
  if (msgs->empty()) throw bad("'messages' must contain at least one message.", "messages", "invalid_value");
  json norm = json::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string param = str_cat("messages[", i, "]");
    if (!m.is_object()) wrong_type(param.c_str(), "an object", m);
    json n = m;
    const json* role = opt(m, "role");
    if (!role || !role->is_string()) throw bad(str_cat(param, ": 'role' must be a string."), param + ".role");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      throw bad(str_cat("Invalid value for '", param, ".role': '", r,
                        "'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'."),
                param + ".role", "invalid_value");
    n["role"] = r;
    n["content"] = m.contains("content") ? normalise_content(m["content"], i) : json(nullptr);
    if (n["content"].is_null() && !(r == "assistant" && m.contains("tool_calls")))
      throw bad(str_cat(param, ": 'content' is required for role '", r, "'."), param + ".content",
                "missing_required_parameter");
    norm.push_back(std::move(n));
  }
  t.gen.grammar = parse_response_format(j, body);
  const bool thinking = thinking_requested(j);
  t.tools = parse_tools(j, body, ctx, thinking);
  t.gen.token_pieces = t.tools.parse();
  // tool_choice "required" or a named function: the answer is calls, whatever response_format
  // asked of a text answer.
  if (auto calls = forced_tool_calls(t.tools)) t.gen.grammar = std::move(calls);
  parse_common(j, t, ctx.tokenizer.vocab_size());
  // logprobs: true with top_logprobs alternatives (0..20), as OpenAI's chat API.
  const bool logprobs = boolean(j, "logprobs", false);
  const auto top = integer(j, "top_logprobs", 0, 20);
  if (top && !logprobs)
    throw bad("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs", "invalid_value");
  if (logprobs) t.gen.logprobs = int(top.value_or(0));
  std::vector<ChatMessage> messages;
  try {
    messages = chat_messages_from_json(norm);
  } catch (const std::exception& e) {  // dsv3::Error or a JSON type error in tool_calls
    throw bad(str_cat("Invalid 'messages': ", e.what()), "messages", "invalid_value");
  }
  check_tool_call_ids(messages);
  if (t.tools.parse()) add_tool_prompt(messages, ctx.chat_template, t.tools);
  std::string prompt;
  try {
    prompt = ctx.chat_template.render(messages, ChatTemplateArgs{true, thinking});
  } catch (const std::exception& e) {
    throw bad(str_cat("Invalid 'messages': ", e.what()), "messages", "invalid_value");
  }
  t.gen.prompt = encode(ctx, prompt, /*add_special=*/false);  // the template wrote the BOS
  // A prompt that opened "<think>" still gets the structured answer from the first token on: the
  // grammar leaves no room for reasoning, so all of it is content.
  t.starts_in_reasoning = prompt_opens_think(prompt) && !t.gen.grammar;
  parse_max_tokens(j, t, ctx.ctx_size, ctx.ctx_size);
  return t;
}

CompletionTask parse_completion_request(const std::string& body, const TaskContext& ctx) {
  const json j = parse_body(body);
  CompletionTask t;
  t.chat = false;
  const json* p = opt(j, "prompt");
  if (!p) throw bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter");
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (p->is_string()) {
    t.gen.prompt = encode(ctx, p->get<std::string>(), /*add_special=*/true);
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {  // token ids
    for (const json& id : *p) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= ctx.tokenizer.vocab_size())
        throw bad("'prompt' token ids must be integers in [0, vocabulary size).", "prompt", "invalid_value");
      t.gen.prompt.push_back(id.get<int32_t>());
    }
  } else {
    throw bad("'prompt' must be a string, an array of one string, or an array of token ids (batches of prompts are "
              "not supported).",
              "prompt", "invalid_type");
  }
  if (t.gen.prompt.empty()) throw bad("'prompt' is empty.", "prompt", "invalid_value");
  for (const char* k : {"echo", "suffix", "best_of"})
    if (const json* v = opt(j, k); v && *v != false && *v != 1)
      throw bad(str_cat("'", k, "' is not supported."), k, "unsupported_parameter");
  parse_common(j, t, ctx.tokenizer.vocab_size());
  // logprobs: how many alternatives to list per token (0..20; OpenAI allows 5, vLLM 20).
  if (const json* lp = opt(j, "logprobs"); lp && !lp->is_null()) t.gen.logprobs = int(*integer(j, "logprobs", 0, 20));
  parse_max_tokens(j, t, ctx.ctx_size, 16);  // OpenAI's default for completions
  return t;
}

std::string random_id(std::string_view prefix, int n_hex) {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::string id(prefix);
  std::lock_guard lk(mu);
  for (int i = 0; i < n_hex; ++i) id += "0123456789abcdef"[rng() & 15];
  return id;
}

json tokenize_response(const std::string& body, const TaskContext& ctx) {
  const json j = parse_body(body);
  std::vector<int32_t> ids;
  if (opt(j, "messages")) {
    ids = parse_chat_request(body, ctx).gen.prompt;
  } else {
    const json* p = opt(j, "prompt");
    if (!p) throw bad("Missing required parameter: 'prompt' (or 'messages').", "prompt", "missing_required_parameter");
    if (!p->is_string()) wrong_type("prompt", "a string", *p);
    ids = encode(ctx, p->get<std::string>(), boolean(j, "add_special_tokens", true));
  }
  return {{"count", ids.size()}, {"max_model_len", ctx.ctx_size}, {"tokens", ids}};
}

json detokenize_response(const std::string& body, const TaskContext& ctx) {
  const json j = parse_body(body);
  const json* t = opt(j, "tokens");
  if (!t) throw bad("Missing required parameter: 'tokens'.", "tokens", "missing_required_parameter");
  if (!t->is_array()) wrong_type("tokens", "an array of token ids", *t);
  std::vector<int32_t> ids;
  for (const json& id : *t) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= ctx.tokenizer.vocab_size())
      throw bad(str_cat("'tokens' must be token ids in [0, ", ctx.tokenizer.vocab_size(), ")."), "tokens",
                "invalid_value");
    ids.push_back(id.get<int32_t>());
  }
  return {{"prompt", ctx.tokenizer.decode(ids)}};
}

ResponseMeta new_response_meta(bool chat, const std::string& model) {
  const int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  return {random_id(chat ? "chatcmpl-" : "cmpl-", 24), now, model, chat};
}

namespace {
json byte_list(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}
}  // namespace

json logprobs_json(bool chat, const std::vector<LogprobEntry>& entries, int64_t& text_offset) {
  if (chat) {
    json content = json::array();
    for (const LogprobEntry& e : entries) {
      json top = json::array();
      for (const auto& [tok, lp] : e.top) top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", byte_list(tok)}});
      content.push_back({{"token", e.token}, {"logprob", e.logprob}, {"bytes", byte_list(e.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(e.token);
    lps.push_back(e.logprob);
    json top = json::object();
    for (const auto& [tok, lp] : e.top) top[tok] = lp;
    tops.push_back(top);
    offsets.push_back(text_offset);
    text_offset += int64_t(e.token.size());
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

static json reason_or_null(const std::string& r) { return r.empty() ? json(nullptr) : json(r); }

json completion_choice(const ResponseMeta& m, int index, const std::string& content,
                       const std::optional<std::string>& reasoning, const std::string& finish_reason,
                       const json& tool_calls) {
  if (!m.chat)
    return {{"index", index}, {"text", content}, {"logprobs", nullptr}, {"finish_reason", reason_or_null(finish_reason)}};
  json msg = {{"role", "assistant"}, {"content", content.empty() && !tool_calls.empty() ? json(nullptr) : json(content)}};
  if (reasoning) msg["reasoning_content"] = *reasoning;
  if (!tool_calls.empty()) msg["tool_calls"] = tool_calls;
  msg["refusal"] = nullptr;
  return {{"index", index}, {"message", msg}, {"logprobs", nullptr}, {"finish_reason", reason_or_null(finish_reason)}};
}

json completion_response(const ResponseMeta& m, const std::string& content, const std::optional<std::string>& reasoning,
                         const std::string& finish_reason, const json& usage, const json& tool_calls) {
  return {{"id", m.id},
          {"object", m.chat ? "chat.completion" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"choices", {completion_choice(m, 0, content, reasoning, finish_reason, tool_calls)}},
          {"usage", usage}};
}

json completion_chunk(const ResponseMeta& m, const json& delta, const std::string& finish_reason, bool include_usage,
                      int index) {
  json choice =
      m.chat ? json{{"index", index}, {"delta", delta}} : json{{"index", index}, {"text", delta.value("text", "")}};
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = reason_or_null(finish_reason);
  json c = {{"id", m.id},
            {"object", m.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", m.created},
            {"model", m.model},
            {"choices", {choice}}};
  if (include_usage) c["usage"] = nullptr;
  return c;
}

json usage_chunk(const ResponseMeta& m, const json& usage) {
  return {{"id", m.id},
          {"object", m.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"choices", json::array()},
          {"usage", usage}};
}

}  // namespace dsv3::server
