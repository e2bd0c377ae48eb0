// `dsv3 serve` as a real process: it prints its port, serves, and on SIGTERM / SIGINT lets the
// in-flight stream finish, then exits 0.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <regex>

#include "server_test_env.h"

extern char** environ;

namespace dsv3::test {
namespace {

class ServeProcess {
 public:
  explicit ServeProcess(const std::vector<std::string>& extra) {
    log_ = fs::path(DSV3_SERVER_TEST_DIR) / ("serve_" + std::to_string(::getpid()) + ".log");
    std::vector<std::string> args = {DSV3_BINARY, "serve", "--model", tiny_model_dir(), "--port", "0",
                                     "-t", "1", "-c", "256"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT_EQ(posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    const std::regex re("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    wait_for([&] {
      std::smatch m;
      const std::string s = log();
      if (std::regex_search(s, m, re)) port_ = std::stoi(m[1]);
      return port_ > 0;
    }, 60);
  }
  ~ServeProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    fs::remove(log_);
  }
  std::string log() const {
    std::ifstream f(log_);
    return std::string((std::istreambuf_iterator<char>(f)), {});
  }
  int port() const { return port_; }
  void signal(int sig) const { ::kill(pid_, sig); }
  // Exit status, or -1 if it did not exit normally within `seconds`.
  int wait_exit(double seconds) {
    int status = 0;
    if (!dsv3::test::wait_for([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, seconds)) return -1;
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  bool reaped_ = false;
  fs::path log_;
};

std::string stream_request(int port, int max_tokens, std::atomic<int>& chunks) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.set_header("Content-Type", "application/json");
  req.body = chat_body("keep talking", max_tokens, true).dump();
  std::string body;
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    body.append(d, n);
    chunks = int(sse_data(body).size());
    return true;
  };
  httplib::Response res;
  httplib::Error err;
  c.send(req, res, err);
  return body;
}

TEST(ServeProcess, SigtermLetsTheRunningStreamFinishThenExitsZero) {
  ServeProcess p({});
  ASSERT_GT(p.port(), 0) << p.log();
  std::atomic<int> chunks{0};
  std::string body;
  std::thread client([&] { body = stream_request(p.port(), 150, chunks); });
  ASSERT_TRUE(wait_for([&] { return chunks.load() >= 2; }, 30)) << p.log();
  p.signal(SIGTERM);
  client.join();
  EXPECT_EQ(p.wait_exit(30), 0) << p.log();
  const auto events = sse_data(body);
  ASSERT_GE(events.size(), 2u) << body;
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(json::parse(events[events.size() - 2])["choices"][0]["finish_reason"], "length") << body;
  EXPECT_NE(p.log().find("shutting down"), std::string::npos);
}

TEST(ServeProcess, SigintWhenIdleExitsZero) {
  ServeProcess p({"--api-key", "k"});
  ASSERT_GT(p.port(), 0) << p.log();
  httplib::Client c("127.0.0.1", p.port());
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  p.signal(SIGINT);
  EXPECT_EQ(p.wait_exit(30), 0) << p.log();
}

TEST(ServeProcess, GraceZeroCancelsTheStreamWithAnError) {
  ServeProcess p({"--shutdown-grace", "0"});
  ASSERT_GT(p.port(), 0) << p.log();
  std::atomic<int> chunks{0};
  std::string body;
  std::thread client([&] { body = stream_request(p.port(), 200, chunks); });
  ASSERT_TRUE(wait_for([&] { return chunks.load() >= 2; }, 30)) << p.log();
  p.signal(SIGTERM);
  client.join();
  EXPECT_EQ(p.wait_exit(30), 0) << p.log();
  const auto events = sse_data(body);
  ASSERT_GE(events.size(), 2u) << body;
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(json::parse(events[events.size() - 2])["error"]["code"], "server_shutdown") << body;
}

}  // namespace
}  // namespace dsv3::test
