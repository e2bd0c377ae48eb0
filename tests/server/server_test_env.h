// Shared pieces of the server tests: a tiny random-weight checkpoint with DeepSeek-V3's real
// tokenizer (made once per build tree), an in-process server on an ephemeral loopback port,
// and small HTTP / server-sent-event helpers on httplib::Client.
#pragma once
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "model/synth.h"
#include "model/transformer.h"
#include "server/server.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::test {

using nlohmann::json;
namespace fs = std::filesystem;

// build/tests/server/tiny_model: written once (atomically renamed in), reused by every test.
inline std::string tiny_model_dir() {
  const fs::path dir = fs::path(DSV3_SERVER_TEST_DIR) / "tiny_model";
  if (!fs::exists(dir / "config.json")) {
    const fs::path tmp = dir.string() + ".tmp" + std::to_string(::getpid());
    SynthOptions o;
    o.out_dir = tmp.string();
    o.force = true;
    o.progress = false;
    o.tokenizer_dir = DSV3_TOKENIZER_DIR;
    write_synthetic_checkpoint(synth_preset("tiny"), o);
    std::error_code ec;
    fs::rename(tmp, dir, ec);  // another test process may have won the race: use its copy
    if (ec) fs::remove_all(tmp);
  }
  return dir.string();
}

// The model, tokenizer and template, loaded once per test process.
struct LoadedChatModel {
  LoadedModel loaded;
  Tokenizer tokenizer;
  ChatTemplate chat_template;
};
inline const LoadedChatModel& tiny_model() {
  static const LoadedChatModel m = [] {
    const std::string dir = tiny_model_dir();
    return LoadedChatModel{load_model(dir), Tokenizer::from_dir(dir),
                           ChatTemplate::from_tokenizer_config(fs::path(dir) / "tokenizer_config.json")};
  }();
  return m;
}

// A server on 127.0.0.1 with a free port, serving from a background thread until destroyed.
class TestServer {
 public:
  // `tmpl`: a chat template other than the checkpoint's (it must outlive the server).
  explicit TestServer(server::ServerOptions opt, const ChatTemplate* tmpl = nullptr) {
    const LoadedChatModel& m = tiny_model();
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.model_name = "tiny";
    srv_ = std::make_unique<server::Server>(*m.loaded.model, m.tokenizer, tmpl ? *tmpl : m.chat_template,
                                            std::move(opt));
    port_ = srv_->bind();
    thread_ = std::thread([this] { srv_->run(); });
  }
  ~TestServer() {
    srv_->stop(std::chrono::milliseconds(0));
    thread_.join();
  }
  int port() const { return port_; }
  server::Server& server() { return *srv_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }

 private:
  std::unique_ptr<server::Server> srv_;
  int port_ = 0;
  std::thread thread_;
};

inline server::ServerOptions small_options(int max_batch = 4, int64_t ctx = 512) {
  server::ServerOptions o;
  o.scheduler.max_batch = max_batch;
  o.scheduler.ctx_size = ctx;
  o.scheduler.max_queue = 16;
  o.scheduler.prefill_chunk = 16;
  o.scheduler.threads = 1;
  return o;
}

struct HttpResult {
  int status = -1;
  std::string body;
  std::string content_type;
};

// POSTs `body`; `on_data` (optional) sees the response body as it arrives and may return false
// to hang up.
inline HttpResult post(const TestServer& s, const std::string& path, const std::string& body,
                       const httplib::Headers& headers = {},
                       std::function<bool(const std::string& so_far)> on_data = nullptr) {
  httplib::Client c = s.client();
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers = headers;
  req.set_header("Content-Type", "application/json");
  req.body = body;
  HttpResult r;
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    r.body.append(d, n);
    return on_data ? on_data(r.body) : true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  if (c.send(req, res, err)) {
    r.status = res.status;
    r.content_type = res.get_header_value("Content-Type");
  }
  return r;
}

inline HttpResult get(const TestServer& s, const std::string& path, const httplib::Headers& headers = {}) {
  httplib::Client c = s.client();
  HttpResult r;
  if (auto res = c.Get(path.c_str(), headers)) {
    r.status = res->status;
    r.body = res->body;
    r.content_type = res->get_header_value("Content-Type");
  }
  return r;
}

// The "data: ..." payloads of a server-sent event stream, in order ("[DONE]" included).
inline std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t end; (end = body.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
    const std::string event = body.substr(pos, end - pos);
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
  }
  return out;
}

// The text of a streamed chat or completion answer (content deltas concatenated).
inline std::string streamed_text(const std::string& body) {
  std::string text;
  for (const std::string& d : sse_data(body)) {
    if (d == "[DONE]") continue;
    const json j = json::parse(d);
    if (j.contains("error") || j["choices"].empty()) continue;
    const json& c = j["choices"][0];
    if (c.contains("delta")) text += c["delta"].value("content", "");
    if (c.contains("text")) text += c["text"].get<std::string>();
  }
  return text;
}

inline json chat_body(const std::string& user, int max_tokens, bool stream = false) {
  return {{"model", "tiny"},
          {"messages", {{{"role", "user"}, {"content", user}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"ignore_eos", true},
          {"stream", stream}};
}

// Polls `cond` every 10 ms for up to `seconds`.
inline bool wait_for(const std::function<bool()>& cond, double seconds = 10) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

}  // namespace dsv3::test
