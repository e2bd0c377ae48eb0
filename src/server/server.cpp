#include "server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "server/metrics.h"
#include "server/relay.h"
#include "server/task.h"
#include "server/web_assets.h"

namespace dsv3::server {

bool constant_time_equal(std::string_view given, std::string_view expected) {
  unsigned char diff = given.size() != expected.size();
  for (size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>((i < given.size() ? given[i] : 0) ^ expected[i]);
  return diff == 0;
}

struct Server::Impl {
  Impl(const Transformer& model, const Tokenizer& tok, const ChatTemplate& tmpl, ServerOptions o)
      : opt(std::move(o)), tctx{tok, tmpl, opt.scheduler.ctx_size}, sched(model, tok, opt.scheduler) {}

  void routes();
  bool authorized(const httplib::Request& req) const;
  void completion(const httplib::Request& req, httplib::Response& res, bool chat);
  static void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(error_json(e).dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  }

  const ServerOptions opt;
  const TaskContext tctx;
  Scheduler sched;
  Metrics metrics;
  httplib::Server http;
  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};  // streamed response bodies still being written
  std::atomic<uint64_t> next_group{1};  // GenRequest::group of the next n > 1 request
  std::once_flag stop_once;
  int listen_fd = -1;  // the listening socket, once bind() made it
  const int64_t started = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
};

bool Server::Impl::authorized(const httplib::Request& req) const {
  if (opt.api_key.empty() || req.path == "/health" || (req.method == "GET" && req.path == "/")) return true;
  const std::string h = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (h.size() < kBearer.size() || !std::equal(kBearer.begin(), kBearer.end(), h.begin(),
                                               [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
    return false;
  return constant_time_equal(std::string_view(h).substr(kBearer.size()), opt.api_key);
}

void Server::Impl::completion(const httplib::Request& req, httplib::Response& res, bool chat) {
  const auto arrived = std::chrono::steady_clock::now();
  try {
    if (stopping.load()) throw ApiError(503, "the server is shutting down", "server_error", {}, "server_shutdown");
    const CompletionTask task = chat ? parse_chat_request(req.body, tctx) : parse_completion_request(req.body, tctx);
    // n > 1: one job per choice, seeds seed, seed + 1, ... (independent samples, reproducible
    // with a seed); all are queued or none.
    std::vector<std::shared_ptr<Job>> jobs;
    const uint64_t group = task.n > 1 ? next_group.fetch_add(1) : 0;  // they share the prompt's rows
    try {
      for (int i = 0; i < task.n; ++i) {
        GenRequest g = task.gen;
        g.sampling.seed += uint64_t(i);
        g.group = group;
        jobs.push_back(sched.submit(std::move(g)));
      }
    } catch (const QueueFull& e) {
      for (auto& j : jobs) j->cancel();
      throw ApiError(429, e.what(), "rate_limit_error", {}, "rate_limit_exceeded");
    } catch (const ShuttingDown& e) {
      for (auto& j : jobs) j->cancel();
      throw ApiError(503, e.what(), "server_error", {}, "server_shutdown");
    }
    relay_jobs(std::move(jobs), task, new_response_meta(chat, opt.model_name), metrics, arrived, in_flight, res);
  } catch (const ApiError& e) {
    if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
    send_error(res, e);
  } catch (const Error& e) {  // anything the validation missed is still the request's fault
    send_error(res, ApiError(400, e.what()));
  }
}

void Server::Impl::routes() {
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, ApiError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
                             "invalid_request_error", {}, "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || res.content_length_ > 0) return;
    std::string msg = "HTTP error " + std::to_string(res.status);
    if (res.status == 404) msg = "Unknown request URL: " + req.method + " " + req.path;
    if (res.status == 413)
      msg = "The request body is too large (the limit is " + std::to_string(opt.max_body_bytes) + " bytes).";
    if (res.status == 400) msg = "Malformed HTTP request.";
    send_error(res, ApiError(res.status, msg, res.status >= 500 ? "server_error" : "invalid_request_error"));
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "internal server error: " + what, "server_error"));
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    static const char* known[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health",
                                  "/metrics",             "/tokenize",       "/detokenize", "/"};
    std::string ep = "other";
    for (const char* k : known)
      if (req.path == k) ep = k;
    metrics.request(ep, res.status);
  });

  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(index_html()), "text/html; charset=utf-8");
  });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (stopping.load()) {
      res.status = 503;
      res.set_content(R"({"status":"shutting down"})", "application/json");
    } else {
      res.set_content(R"({"status":"ok"})", "application/json");
    }
  });
  auto models = [this](const httplib::Request&, httplib::Response& res) {
    const json m = {{"id", opt.model_name}, {"object", "model"}, {"created", started}, {"owned_by", "dsv3"},
                    {"max_model_len", opt.scheduler.ctx_size}};
    res.set_content(json{{"object", "list"}, {"data", {m}}}.dump(), "application/json");
  };
  http.Get("/v1/models", models);
  http.Get("/models", models);
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(sched), "text/plain; version=0.0.4; charset=utf-8");
  });
  auto json_endpoint = [this](json (*handle)(const std::string&, const TaskContext&)) {
    return [this, handle](const httplib::Request& req, httplib::Response& res) {
      try {
        res.set_content(handle(req.body, tctx).dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const Error& e) {
        send_error(res, ApiError(400, e.what()));
      }
    };
  };
  http.Post("/tokenize", json_endpoint(tokenize_response));
  http.Post("/detokenize", json_endpoint(detokenize_response));
  for (const char* p : {"/v1/chat/completions", "/chat/completions"})
    http.Post(p, [this](const httplib::Request& q, httplib::Response& r) { completion(q, r, true); });
  for (const char* p : {"/v1/completions", "/completions"})
    http.Post(p, [this](const httplib::Request& q, httplib::Response& r) { completion(q, r, false); });
}

Server::Server(const Transformer& model, const Tokenizer& tok, const ChatTemplate& tmpl, ServerOptions opt)
    : impl_(std::make_unique<Impl>(model, tok, tmpl, std::move(opt))) {
  Impl& m = *impl_;
  const SchedulerOptions& s = m.opt.scheduler;
  const int threads = m.opt.http_threads > 0 ? m.opt.http_threads
                                             : std::clamp(s.max_batch + s.max_queue + 16, 32, 1024);
  m.http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  m.http.set_payload_max_length(m.opt.max_body_bytes);
  // A slow or stuck client only ever holds its own handler thread, and not for long.
  m.http.set_read_timeout(30, 0);
  m.http.set_write_timeout(10, 0);
  m.http.set_keep_alive_timeout(2);
  // httplib's default options set SO_REUSEPORT, which lets a second server bind a port that one
  // is listening on (both then get connections). SO_REUSEADDR only rebinds a port whose old
  // connections are in TIME_WAIT; a port in use fails bind() with the error below. The socket
  // is kept so that bind() can raise its backlog.
  m.http.set_socket_options([&m](socket_t fd) {
    const int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    m.listen_fd = fd;
  });
  m.routes();
}

Server::~Server() { stop(std::chrono::milliseconds(0)); }

int Server::bind() {
  Impl& m = *impl_;
  int port = m.opt.port;
  if (port == 0) {
    port = m.http.bind_to_any_port(m.opt.host);
    DSV3_CHECK(port > 0, "cannot listen on ", m.opt.host, " (any port)");
  } else {
    DSV3_CHECK(m.http.bind_to_port(m.opt.host, port), "cannot listen on ", m.opt.host, ":", port,
               " (in use, or not an address of this machine)");
  }
  // Debian's libcpp-httplib is compiled with a listen backlog of 5: 32 clients connecting at
  // once overflowed the accept queue, SYNs were dropped (a 1 s retransmit in the TTFT) and one
  // connection was reset. listen() on a listening socket sets its backlog anew; the kernel caps
  // it at net.core.somaxconn.
  DSV3_CHECK(m.listen_fd >= 0 && ::listen(m.listen_fd, SOMAXCONN) == 0, "cannot listen on ", m.opt.host, ":",
             port, " (listen: ", std::strerror(errno), ")");
  return port;
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop(std::chrono::milliseconds grace) {
  std::call_once(impl_->stop_once, [&] {
    impl_->stopping = true;
    impl_->sched.shutdown(grace);
    // Every job has ended; let the handlers write the last chunks before connections close.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (impl_->in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    impl_->http.stop();
  });
}

Scheduler& Server::scheduler() { return impl_->sched; }
const Metrics& Server::metrics() const { return impl_->metrics; }

}  // namespace dsv3::server
