// The OpenAI-compatible HTTP server (cpp-httplib): routes, API-key check, body limit, error
// answers and lifecycle. HTTP handler threads only parse requests, submit jobs to the
// Scheduler and relay their output; all model work runs on the scheduler's thread.
#pragma once
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "engine/scheduler.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::server {

class Metrics;

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (see Server::bind)
  std::string api_key;             // empty: no authentication
  std::string model_name = "dsv3";  // "model" in responses and /v1/models
  size_t max_body_bytes = 8u << 20;  // larger request bodies are answered 413
  int http_threads = 0;              // 0: enough for max_batch + max_queue streams and some spare
  SchedulerOptions scheduler;
};

class Server {
 public:
  // `model`, `tok` and `tmpl` must outlive the server.
  Server(const Transformer& model, const Tokenizer& tok, const ChatTemplate& tmpl, ServerOptions opt);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port (the chosen one when options.port is 0).
  // Throws dsv3::Error when the address cannot be bound.
  int bind();
  // Serves until stop() (call after bind()). Returns once every connection is closed.
  void run();
  // Thread-safe, idempotent; not async-signal-safe. New completion requests get 503 from now
  // on; running and queued ones may finish for up to `grace` and are cancelled after it; then
  // the listening socket closes and run() returns.
  void stop(std::chrono::milliseconds grace);

  Scheduler& scheduler();
  const Metrics& metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Equality of two strings in time that depends only on the length of `expected`.
bool constant_time_equal(std::string_view given, std::string_view expected);

}  // namespace dsv3::server
