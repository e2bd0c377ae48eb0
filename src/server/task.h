// JSON in and out of the OpenAI-compatible API: request bodies validated and turned into
// engine requests (every problem an ApiError, answered as {"error": {...}}), and the response
// and stream-chunk objects shaped exactly as OpenAI's.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

#include "engine/scheduler.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tool_calls.h"

namespace dsv3::server {

using nlohmann::json;

// An error answer: HTTP status plus OpenAI's error object fields.
struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& message, std::string type = "invalid_request_error",
           std::string param = {}, std::string code = {})
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type, param, code;  // empty param / code are written as null
};
// {"error": {"message", "type", "param", "code"}}.
json error_json(const ApiError& e);

// What the model needs to turn a request into tokens.
struct TaskContext {
  const Tokenizer& tokenizer;
  const ChatTemplate& chat_template;
  int64_t ctx_size;
};

// Most choices one request may ask for (`n`), as OpenAI's limit.
inline constexpr int kMaxChoices = 128;

// OpenAI's tool_choice.
enum class ToolChoice { kNone, kAuto, kRequired, kFunction };

// A chat request's tools: declared in the prompt's "## Tools" block, and the answer's calls
// parsed out of the generated tokens unless tool_choice is "none".
struct ToolTask {
  std::vector<ToolDefinition> tools;  // empty: no tools (or tool_choice "none")
  ToolChoice choice = ToolChoice::kNone;
  std::string function;             // kFunction: the tool that must be called
  bool parallel = true;             // parallel_tool_calls: false keeps only the first call
  ToolCallSyntax syntax;            // of the model's chat format
  ToolCallTokens ids{};             // the markers' token ids
  bool parse() const { return choice != ToolChoice::kNone && !tools.empty(); }
};

// A validated /v1/chat/completions or /v1/completions request.
struct CompletionTask {
  bool chat = true;
  bool stream = false;
  bool include_usage = false;        // stream_options.include_usage
  bool starts_in_reasoning = false;  // the prompt opened "<think>" (R1 template)
  int n = 1;                         // choices: independent samples of the same prompt
  ToolTask tools;
  GenRequest gen;
};

// Parse and validate a request body; throw ApiError (400) on anything wrong.
CompletionTask parse_chat_request(const std::string& body, const TaskContext& ctx);
CompletionTask parse_completion_request(const std::string& body, const TaskContext& ctx);

// POST /tokenize, as vLLM's: {"prompt": string, "add_special_tokens": bool (default true)}, or a
// chat request's fields ({"messages", "tools", "chat_template_kwargs", ...}: the tokens it would
// prefill). Answers {"count", "max_model_len", "tokens"}. Throws ApiError (400).
json tokenize_response(const std::string& body, const TaskContext& ctx);
// POST /detokenize: {"tokens": [ids]} -> {"prompt": text} (special tokens kept). Throws ApiError.
json detokenize_response(const std::string& body, const TaskContext& ctx);

// Identity shared by all objects of one response.
struct ResponseMeta {
  std::string id;  // "chatcmpl-..." or "cmpl-..."
  int64_t created;
  std::string model;
  bool chat;
};
ResponseMeta new_response_meta(bool chat, const std::string& model);
// `prefix` followed by `n_hex` random hex digits (response and tool-call ids).
std::string random_id(std::string_view prefix, int n_hex);

// OpenAI's usage object; prompt_tokens_details.cached_tokens counts the prompt tokens whose
// cache rows were reused (prefix caching).
json usage_json(int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens = 0);
// A choice's "logprobs" for these generated tokens: chat {"content": [{"token", "logprob",
// "bytes", "top_logprobs"}]}; completions the legacy {"tokens", "token_logprobs",
// "top_logprobs", "text_offset"}, offsets counted on from `text_offset` (in bytes).
json logprobs_json(bool chat, const std::vector<LogprobEntry>& entries, int64_t& text_offset);
// Non-streaming answers. `reasoning` is set when the answer had a <think> part; `tool_calls`
// (chat), when not empty, is message.tool_calls, and an empty content is then null.
json completion_response(const ResponseMeta& m, const std::string& content, const std::optional<std::string>& reasoning,
                         const std::string& finish_reason, const json& usage, const json& tool_calls = json::array());
// Choice `index` of a non-streaming answer (completion_response's one choice is index 0).
json completion_choice(const ResponseMeta& m, int index, const std::string& content,
                       const std::optional<std::string>& reasoning, const std::string& finish_reason,
                       const json& tool_calls = json::array());
// One stream chunk of choice `index`. Chat: `delta` is the delta object; completions:
// {"text": ...}. An empty finish_reason is written as null. With include_usage, "usage": null
// is added.
json completion_chunk(const ResponseMeta& m, const json& delta, const std::string& finish_reason, bool include_usage,
                      int index = 0);
// The last chunk of a stream with include_usage: no choices, the usage.
json usage_chunk(const ResponseMeta& m, const json& usage);

}  // namespace dsv3::server
