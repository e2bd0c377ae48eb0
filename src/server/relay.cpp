#include "server/relay.h"

#include <iterator>
#include <optional>
#include <vector>

#include "server/reasoning.h"
#include "server/tool_stream.h"

namespace dsv3::server {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

// A job's output as the response needs it: text split into reasoning and content (chat), and
// token timing recorded in the metrics.
class Relay {
 public:
  Relay(std::shared_ptr<Job> job, const CompletionTask& task, const ResponseMeta& meta, Metrics& metrics,
        Clock::time_point arrived)
      : job(std::move(job)), task(task), meta(meta), metrics_(metrics), arrived_(arrived), last_(arrived),
        splitter_(task.starts_in_reasoning) {
    if (task.tools.parse()) tools_.emplace(task.tools, task.gen.stop);
  }

  struct Piece {
    std::string reasoning, content;
    json tool_calls = json::array();  // delta.tool_calls entries
    std::vector<LogprobEntry> logprobs;
  };
  // Waits up to `timeout` for output; what came, split. Sets done / finish_reason / error at the end.
  Piece next(milliseconds timeout) {
    JobOutput o = job->take(timeout);
    const auto now = Clock::now();
    if (o.new_tokens > 0) {
      if (!first_token_) {
        metrics_.time_to_first_token(std::chrono::duration<double>(now - arrived_).count());
        if (o.new_tokens > 1) metrics_.inter_token_latency(0.0, o.new_tokens - 1);
        first_token_ = true;
      } else {
        metrics_.inter_token_latency(std::chrono::duration<double>(now - last_).count(), o.new_tokens);
      }
      last_ = now;
    }
    Piece p;
    if (tools_) {  // the calls are parsed from the tokens; the text outside them is content
      ToolCallStream::Delta d = tools_->push(o.pieces);
      if (o.done) {
        ToolCallStream::Delta rest = tools_->finish();
        d.content += rest.content;
        d.tool_calls.insert(d.tool_calls.end(), rest.tool_calls.begin(), rest.tool_calls.end());
      }
      o.text = std::move(d.content);
      p.tool_calls = std::move(d.tool_calls);
    }
    if (task.chat) {
      auto parts = splitter_.push(o.text);
      if (o.done) {
        auto rest = splitter_.flush();
        parts.reasoning += rest.reasoning;
        parts.content += rest.content;
      }
      p.reasoning = std::move(parts.reasoning);
      p.content = std::move(parts.content);
    } else {
      p.content = std::move(o.text);
    }
    p.logprobs = std::move(o.logprobs);
    if (o.done && !done) {
      done = true;
      finish_reason = o.finish_reason;
      if (finish_reason == "stop" && tools_ && tools_->called()) finish_reason = "tool_calls";
      error = o.error;
      metrics_.tokens(int64_t(job->request().prompt.size()), job->completion_tokens(), job->cached_tokens());
    }
    return p;
  }
  bool seen_reasoning() const { return splitter_.seen_reasoning(); }
  json tool_calls() const { return tools_ ? tools_->tool_calls() : json::array(); }
  bool wants_logprobs() const { return task.gen.logprobs >= 0; }
  // The choice's "logprobs" for these entries (text offsets continue across calls).
  json logprobs(const std::vector<LogprobEntry>& entries) { return logprobs_json(task.chat, entries, text_offset_); }
  json usage() const {
    return usage_json(int64_t(job->request().prompt.size()), job->completion_tokens(), job->cached_tokens());
  }
  // The error to answer when the job did not end normally.
  std::optional<ApiError> failure() const {
    if (finish_reason == "error") return ApiError(500, "generation failed: " + error, "server_error");
    if (finish_reason == "cancelled")
      return ApiError(503, "the request was cancelled (the server is shutting down)", "server_error", {},
                      "server_shutdown");
    return std::nullopt;
  }

  const std::shared_ptr<Job> job;
  const CompletionTask task;
  const ResponseMeta meta;
  bool done = false;
  std::string finish_reason, error;

 private:
  Metrics& metrics_;
  Clock::time_point arrived_, last_;
  bool first_token_ = false;
  ReasoningSplitter splitter_;
  std::optional<ToolCallStream> tools_;  // the request declared tools
  int64_t text_offset_ = 0;
};

// Provider for stream=true: one call writes what the job produced since the last call. Token
// logprobs ride on the next text chunk (text held back by stop-string matching comes later than
// its tokens), and whatever is left on the final chunk.
bool stream_step(Relay& r, bool& started, Clock::time_point& last_write, std::vector<LogprobEntry>& pending_lp,
                 httplib::DataSink& sink) {
  std::string out;
  if (!started) {
    started = true;
    if (r.task.chat)
      out += sse(completion_chunk(r.meta, {{"role", "assistant"}, {"content", ""}}, "", r.task.include_usage));
  }
  Relay::Piece p = r.next(milliseconds(250));
  std::move(p.logprobs.begin(), p.logprobs.end(), std::back_inserter(pending_lp));
  auto chunk = [&](const json& delta, const std::string& finish) {
    json c = completion_chunk(r.meta, delta, finish, r.task.include_usage);
    if (r.wants_logprobs() && !pending_lp.empty()) {
      c["choices"][0]["logprobs"] = r.logprobs(pending_lp);
      pending_lp.clear();
    }
    return sse(c);
  };
  if (!p.reasoning.empty()) out += chunk({{"reasoning_content", p.reasoning}}, "");
  if (!p.content.empty()) out += chunk(r.task.chat ? json{{"content", p.content}} : json{{"text", p.content}}, "");
  if (!p.tool_calls.empty()) out += chunk({{"tool_calls", p.tool_calls}}, "");
  if (r.done) {
    if (auto f = r.failure()) {
      out += sse(error_json(*f));
    } else {
      out += chunk(r.task.chat ? json::object() : json{{"text", ""}}, r.finish_reason);
      if (r.task.include_usage) out += sse(usage_chunk(r.meta, r.usage()));
    }
    out += "data: [DONE]\n\n";
  } else if (out.empty() && Clock::now() - last_write > milliseconds(1000)) {
    out = ": keep-alive\n\n";  // an SSE comment: finds a client that has gone while we wait
  }
  if (!out.empty()) {
    if (!sink.write(out.data(), out.size())) return false;
    last_write = Clock::now();
  }
  if (r.done) sink.done();
  return true;
}

struct Collected {
  std::string reasoning, content;
  std::vector<LogprobEntry> logprobs;
  void add(Relay::Piece p) {
    reasoning += p.reasoning;
    content += p.content;
    std::move(p.logprobs.begin(), p.logprobs.end(), std::back_inserter(logprobs));
  }
};

std::string final_body(Relay& r, const Collected& c) {
  if (auto f = r.failure()) return dump(error_json(*f));
  std::optional<std::string> reasoning;
  if (r.seen_reasoning()) reasoning = c.reasoning;
  json j = completion_response(r.meta, c.content, reasoning, r.finish_reason, r.usage(), r.tool_calls());
  if (r.wants_logprobs()) j["choices"][0]["logprobs"] = r.logprobs(c.logprobs);
  return dump(j);
}

}  // namespace

void relay_job(std::shared_ptr<Job> job, const CompletionTask& task, const ResponseMeta& meta, Metrics& metrics,
               Clock::time_point arrived, std::atomic<int>& in_flight, httplib::Response& res) {
  auto r = std::make_shared<Relay>(std::move(job), task, meta, metrics, arrived);
  auto release = [r, &in_flight](bool) {
    r->job->cancel();  // no-op for a finished job; frees the slot otherwise
    --in_flight;
  };
  if (task.stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    ++in_flight;
    auto started = std::make_shared<bool>(false);
    auto last_write = std::make_shared<Clock::time_point>(Clock::now());
    auto pending_lp = std::make_shared<std::vector<LogprobEntry>>();
    res.set_chunked_content_provider(
        "text/event-stream",
        [r, started, last_write, pending_lp](size_t, httplib::DataSink& sink) {
          return stream_step(*r, *started, *last_write, *pending_lp, sink);
        },
        release);
    return;
  }
  // Non-streaming: most answers are ready within a second and get a normal response (with the
  // right status code); longer ones switch to a chunked body led by JSON whitespace heartbeats.
  auto c = std::make_shared<Collected>();
  const auto deadline = Clock::now() + milliseconds(1000);
  while (!r->done && Clock::now() < deadline)
    c->add(r->next(std::chrono::duration_cast<milliseconds>(deadline - Clock::now())));
  if (r->done) {
    const auto f = r->failure();
    res.status = f ? f->status : 200;
    res.set_content(final_body(*r, *c), "application/json");
    return;
  }
  ++in_flight;
  res.set_chunked_content_provider(
      "application/json",
      [r, c](size_t, httplib::DataSink& sink) {
        const auto beat = Clock::now() + milliseconds(1000);
        while (!r->done && Clock::now() < beat)
          c->add(r->next(std::chrono::duration_cast<milliseconds>(beat - Clock::now()) + milliseconds(1)));
        const std::string out = r->done ? final_body(*r, *c) : std::string(" ");
        if (!sink.write(out.data(), out.size())) return false;
        if (r->done) sink.done();
        return true;
      },
      release);
}

}  // namespace dsv3::server
