// `dsv3 serve`: the OpenAI-compatible HTTP server (see docs/server.md). SIGINT / SIGTERM stop
// it cleanly: no new work, in-flight requests get --shutdown-grace seconds, then exit 0.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/collectives.h"
#include "core/error.h"
#include "server/server.h"

namespace dsv3::cli {

namespace {

struct Opts {
  std::string model;
  server::ServerOptions server;
  double grace_s = 10;
  std::string speculative;
  std::string chat_template_file;
  std::string kv_cache;
  LoadOptions load;
};

int run(Opts& o) {
  SamplingOptions spec;
  spec.speculative = o.speculative;
  o.server.scheduler.speculative_k = spec.speculative_k();  // validate before the (slow) load
  o.server.scheduler.cache_dtype = kv_cache_dtype(o.kv_cache);
  ChatModel cm = load_chat_model(o.model, o.load, o.chat_template_file);
  const ModelConfig& c = cm.loaded.config;
  SchedulerOptions& so = o.server.scheduler;
  if (collectives().rank() != 0) {  // under mpirun: rank 0 serves, the others follow its steps
    ThreadPool pool(so.threads);
    follow_rank0(cm.loaded, pool);
    return 0;
  }
  so.ctx_size = std::min(so.ctx_size, c.max_position_embeddings);
  if (o.server.model_name.empty()) o.server.model_name = std::filesystem::path(o.model).filename().string();
  if (o.server.model_name.empty()) o.server.model_name = std::filesystem::path(o.model).parent_path().filename().string();

  // Signals are taken by sigwait below: block them before any thread starts, so every thread
  // inherits the mask. A client that hangs up must not kill the process (SIGPIPE).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  server::Server srv(*cm.loaded.model, cm.tokenizer, cm.chat_template, o.server);
  const int port = srv.bind();
  if (o.server.host != "127.0.0.1" && o.server.host != "localhost" && o.server.host != "::1" && o.server.api_key.empty())
    std::fprintf(stderr, "dsv3 serve: warning: listening on %s without --api-key: anyone who can reach this address "
                         "can use the model\n", o.server.host.c_str());
  std::fprintf(stderr, "dsv3 serve: listening on http://%s:%d (model '%s', %d slots of %lld tokens, %d threads)\n",
               o.server.host.c_str(), port, o.server.model_name.c_str(), so.max_batch, (long long)so.ctx_size,
               so.threads);
  std::fflush(stderr);

  std::thread http([&] {
    srv.run();
    kill(getpid(), SIGTERM);  // wakes the sigwait below if the server stopped on its own
  });
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "dsv3 serve: %s: shutting down (in-flight requests get %.0f s)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", o.grace_s);
  srv.stop(std::chrono::milliseconds(int64_t(o.grace_s * 1000)));
  http.join();
  std::fprintf(stderr, "dsv3 serve: stopped\n");
  return 0;
}

}  // namespace

Run add_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with a chat page (see docs/server.md)");
  auto o = std::make_shared<Opts>();
  o->server.model_name.clear();
  SchedulerOptions& so = o->server.scheduler;
  cmd->add_option("--model", o->model, "Checkpoint folder with tokenizer.json and tokenizer_config.json, or a GGUF file (.gguf)")->required();
  cmd->add_option("--chat-template-file", o->chat_template_file,
                  "Jinja chat template to use instead of tokenizer_config.json's (DeepSeek-V3, R1, V3-0324, R1-0528 "
                  "or V3.1, recognised from the text)");
  cmd->add_option("--host", o->server.host, "Address to listen on (0.0.0.0: all interfaces)")->capture_default_str();
  cmd->add_option("--port", o->server.port, "Port (0: any free port, printed at start)")
      ->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--api-key", o->server.api_key, "Require 'Authorization: Bearer KEY' (all endpoints but /health)");
  cmd->add_option("--served-model-name", o->server.model_name, "Model name in the API (default: the folder name)");
  cmd->add_option("--max-batch,-b", so.max_batch, "Requests decoded together (each holds a KV cache of --ctx-size)")
      ->check(CLI::Range(1, 1024))->capture_default_str();
  cmd->add_option("--ctx-size,-c", so.ctx_size, "Context size of each request in tokens")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 30))->capture_default_str();
  cmd->add_option("--max-queue", so.max_queue, "Requests that may wait for a slot; more are answered 429")
      ->check(CLI::Range(0, 1 << 20))->capture_default_str();
  cmd->add_option("--prefill-chunk", so.prefill_chunk, "Prompt tokens prefilled per step between decode steps")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
  add_kv_cache_option(cmd, o->kv_cache);
  cmd->add_flag("--no-prefix-cache{false}", so.prefix_cache,
                "Always prefill whole prompts (default: reuse the cached prefix a free slot shares with the prompt)");
  cmd->add_option("--max-body", o->server.max_body_bytes, "Largest request body in bytes (larger: 413)")
      ->check(CLI::Range(size_t(1024), size_t(1) << 34))->capture_default_str();
  cmd->add_option("--shutdown-grace", o->grace_s, "Seconds in-flight requests may finish after SIGINT/SIGTERM")
      ->check(CLI::Range(0.0, 3600.0))->capture_default_str();
  cmd->add_option("--speculative", o->speculative,
                  "Self-speculative decoding with the checkpoint's MTP module: mtp (1 draft token) or mtp:K; "
                  "each sequence verifies its own drafts inside the batched step");
  add_load_options(cmd, o->load);
  add_threads_option(cmd, so.threads);
  return [o] {
    o->kv_cache = resolve_kv_cache(o->kv_cache, o->model);
    return run(*o);
  };
}

}  // namespace dsv3::cli
