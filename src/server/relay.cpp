#include "server/relay.h"

#include <algorithm>
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
  // `index`: the choice this job answers (n > 1); only choice 0 records token latencies.
  Relay(std::shared_ptr<Job> job, int index, const CompletionTask& task, const ResponseMeta& meta, Metrics& metrics,
        Clock::time_point arrived)
      : job(std::move(job)), index(index), task(task), meta(meta), metrics_(metrics), arrived_(arrived), last_(arrived),
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
    if (o.new_tokens > 0 && index == 0) {
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
  // The error to answer when the job did not end normally.
  std::optional<ApiError> failure() const {
    if (finish_reason == "error") return ApiError(500, "generation failed: " + error, "server_error");
    if (finish_reason == "cancelled")
      return ApiError(503, "the request was cancelled (the server is shutting down)", "server_error", {},
                      "server_shutdown");
    return std::nullopt;
  }

  const std::shared_ptr<Job> job;
  const int index;
  const CompletionTask& task;
  const ResponseMeta& meta;
  bool done = false;
  bool finish_sent = false;  // streaming: the choice's final chunk went out
  std::string finish_reason, error;

 private:
  Metrics& metrics_;
  Clock::time_point arrived_, last_;
  bool first_token_ = false;
  ReasoningSplitter splitter_;
  std::optional<ToolCallStream> tools_;  // the request declared tools
  int64_t text_offset_ = 0;
};

// A request's choices: one relay per job (n > 1: independent samples of one prompt).
struct Response {
  Response(std::vector<std::shared_ptr<Job>> jobs, const CompletionTask& task, const ResponseMeta& meta,
           Metrics& metrics, Clock::time_point arrived)
      : task(task), meta(meta) {
    for (size_t i = 0; i < jobs.size(); ++i)
      relays.push_back(std::make_unique<Relay>(std::move(jobs[i]), int(i), this->task, this->meta, metrics, arrived));
  }
  bool done() const {
    return std::all_of(relays.begin(), relays.end(), [](const auto& r) { return r->done; });
  }
  // The first failed choice's error: one failure fails the whole answer.
  std::optional<ApiError> failure() const {
    for (const auto& r : relays)
      if (auto f = r->failure()) return f;
    return std::nullopt;
  }
  // The prompt counted once, the completions of every choice; cached tokens as choice 0 found
  // them (the other choices share its prompt).
  json usage() const {
    int64_t completion = 0;
    for (const auto& r : relays) completion += r->job->completion_tokens();
    const Job& first = *relays[0]->job;
    return usage_json(int64_t(first.request().prompt.size()), completion, first.cached_tokens());
  }
  void cancel() const {
    for (const auto& r : relays) r->job->cancel();  // no-op for a finished job; frees the slot otherwise
  }

  const CompletionTask task;
  const ResponseMeta meta;
  std::vector<std::unique_ptr<Relay>> relays;
};

// Waits up to `timeout` for output of any unfinished choice; the pieces of each (index-aligned,
// empty for choices with nothing new).
std::vector<Relay::Piece> next_pieces(Response& resp, milliseconds timeout) {
  std::vector<Relay::Piece> out(resp.relays.size());
  if (resp.relays.size() == 1) {
    out[0] = resp.relays[0]->next(timeout);
    return out;
  }
  // Several jobs: take what each has without waiting, then wait on the first unfinished one for
  // the rest of the time (its neighbours run in the same batch steps).
  bool any = false;
  for (size_t i = 0; i < resp.relays.size(); ++i) {
    Relay& r = *resp.relays[i];
    if (r.done) continue;
    out[i] = r.next(milliseconds(0));
    any = any || r.done || !out[i].content.empty() || !out[i].reasoning.empty() || !out[i].tool_calls.empty() ||
          !out[i].logprobs.empty();
  }
  if (any) return out;
  for (size_t i = 0; i < resp.relays.size(); ++i)
    if (!resp.relays[i]->done) {
      out[i] = resp.relays[i]->next(timeout);
      break;
    }
  return out;
}

// Provider for stream=true: one call writes what the jobs produced since the last call, each
// chunk carrying its choice's index. Token logprobs ride on the next text chunk of their choice
// (text held back by stop-string matching comes later than its tokens), and whatever is left
// on the choice's final chunk.
bool stream_step(Response& resp, bool& started, Clock::time_point& last_write,
                 std::vector<std::vector<LogprobEntry>>& pending_lp, httplib::DataSink& sink) {
  const CompletionTask& task = resp.task;
  std::string out;
  if (!started) {
    started = true;
    if (task.chat)
      for (int i = 0; i < task.n; ++i)
        out += sse(completion_chunk(resp.meta, {{"role", "assistant"}, {"content", ""}}, "", task.include_usage, i));
  }
  const bool was_done = resp.done();
  std::vector<Relay::Piece> pieces = next_pieces(resp, milliseconds(250));
  for (size_t i = 0; i < pieces.size(); ++i) {
    Relay& r = *resp.relays[i];
    Relay::Piece& p = pieces[i];
    auto& lp = pending_lp[i];
    std::move(p.logprobs.begin(), p.logprobs.end(), std::back_inserter(lp));
    auto chunk = [&](const json& delta, const std::string& finish) {
      json c = completion_chunk(resp.meta, delta, finish, task.include_usage, r.index);
      if (r.wants_logprobs() && !lp.empty()) {
        c["choices"][0]["logprobs"] = r.logprobs(lp);
        lp.clear();
      }
      return sse(c);
    };
    if (!p.reasoning.empty()) out += chunk({{"reasoning_content", p.reasoning}}, "");
    if (!p.content.empty()) out += chunk(task.chat ? json{{"content", p.content}} : json{{"text", p.content}}, "");
    if (!p.tool_calls.empty()) out += chunk({{"tool_calls", p.tool_calls}}, "");
    // A choice's final chunk as soon as it ends (unless the answer failed: then one error).
    if (r.done && !r.failure() && !r.finish_sent) {
      r.finish_sent = true;
      out += chunk(task.chat ? json::object() : json{{"text", ""}}, r.finish_reason);
    }
  }
  const bool done = resp.done();
  if (done && !was_done) {
    if (auto f = resp.failure()) {
      out += sse(error_json(*f));
    } else if (task.include_usage) {
      out += sse(usage_chunk(resp.meta, resp.usage()));
    }
    out += "data: [DONE]\n\n";
  } else if (out.empty() && Clock::now() - last_write > milliseconds(1000)) {
    out = ": keep-alive\n\n";  // an SSE comment: finds a client that has gone while we wait
  }
  if (!out.empty()) {
    if (!sink.write(out.data(), out.size())) return false;
    last_write = Clock::now();
  }
  if (done) sink.done();
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

// Non-streaming: each choice's output so far.
struct CollectedAll {
  std::vector<Collected> choices;
  void collect(Response& resp, milliseconds timeout) {
    std::vector<Relay::Piece> pieces = next_pieces(resp, timeout);
    for (size_t i = 0; i < pieces.size(); ++i) choices[i].add(std::move(pieces[i]));
  }
};

std::string final_body(Response& resp, const CollectedAll& c) {
  if (auto f = resp.failure()) return dump(error_json(*f));
  json choices = json::array();
  for (size_t i = 0; i < resp.relays.size(); ++i) {
    Relay& r = *resp.relays[i];
    const Collected& ci = c.choices[i];
    std::optional<std::string> reasoning;
    if (r.seen_reasoning()) reasoning = ci.reasoning;
    json choice = completion_choice(resp.meta, r.index, ci.content, reasoning, r.finish_reason, r.tool_calls());
    if (r.wants_logprobs()) choice["logprobs"] = r.logprobs(ci.logprobs);
    choices.push_back(std::move(choice));
  }
  json j = completion_response(resp.meta, "", std::nullopt, "", resp.usage());
  j["choices"] = std::move(choices);
  return dump(j);
}

}  // namespace

void relay_jobs(std::vector<std::shared_ptr<Job>> jobs, const CompletionTask& task, const ResponseMeta& meta,
                Metrics& metrics, Clock::time_point arrived, std::atomic<int>& in_flight, httplib::Response& res) {
  auto r = std::make_shared<Response>(std::move(jobs), task, meta, metrics, arrived);
  auto release = [r, &in_flight](bool) {
    r->cancel();
    --in_flight;
  };
  if (task.stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    ++in_flight;
    auto started = std::make_shared<bool>(false);
    auto last_write = std::make_shared<Clock::time_point>(Clock::now());
    auto pending_lp = std::make_shared<std::vector<std::vector<LogprobEntry>>>(r->relays.size());
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
  auto c = std::make_shared<CollectedAll>();
  c->choices.resize(r->relays.size());
  const auto deadline = Clock::now() + milliseconds(1000);
  while (!r->done() && Clock::now() < deadline)
    c->collect(*r, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
  if (r->done()) {
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
        while (!r->done() && Clock::now() < beat)
          c->collect(*r, std::chrono::duration_cast<milliseconds>(beat - Clock::now()) + milliseconds(1));
        const std::string out = r->done() ? final_body(*r, *c) : std::string(" ");
        if (!sink.write(out.data(), out.size())) return false;
        if (r->done()) sink.done();
        return true;
      },
      release);
}

}  // namespace dsv3::server
