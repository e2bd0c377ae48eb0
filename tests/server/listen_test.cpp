// The listening socket: a port in use is refused, and many clients connecting at once all get
// through the handshake before the server accepts any of them (Debian's cpp-httplib listens
// with a backlog of 5, which reset a connection of the 32-client load test).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "server_test_env.h"

namespace dsv3::test {
namespace {

std::unique_ptr<server::Server> make_server(int port) {
  const LoadedChatModel& m = tiny_model();
  server::ServerOptions opt;
  opt.host = "127.0.0.1";
  opt.port = port;
  opt.model_name = "tiny";
  return std::make_unique<server::Server>(*m.loaded.model, m.tokenizer, m.chat_template, std::move(opt));
}

TEST(ServerListen, APortInUseIsRefused) {
  TestServer a(server::ServerOptions{});
  auto b = make_server(a.port());
  try {
    b->bind();
    FAIL() << "a second server bound port " << a.port() << ", which the first one listens on";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
  // The first server still answers.
  httplib::Client c("127.0.0.1", a.port());
  const auto r = c.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(ServerListen, SixtyFourConnectsCompleteBeforeTheFirstAccept) {
  auto srv = make_server(0);
  const int port = srv->bind();  // listening, nothing accepted yet
  constexpr int kClients = 64;
  std::vector<int> fds;
  for (int i = 0; i < kClients; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
  }
  // A connect completes when the handshake does. A SYN dropped for a full accept queue is
  // retried after 1 s and 3 s more, so what has not completed within 5 s waits for the queue.
  int connected = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<bool> done(kClients, false);
  while (connected < kClients && std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < kClients; ++i) {
      if (done[size_t(i)]) continue;
      pollfd p{fds[size_t(i)], POLLOUT, 0};
      if (::poll(&p, 1, 0) == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fds[size_t(i)], SOL_SOCKET, SO_ERROR, &err, &len);
        EXPECT_EQ(err, 0) << "client " << i << ": " << std::strerror(err);
        done[size_t(i)] = true;
        ++connected;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(connected, kClients) << "connections still waiting in the accept queue";
  // Serve (the closed connections are accepted and read to their end), then stop.
  std::thread t([&] { srv->run(); });
  httplib::Client c("127.0.0.1", port);
  const auto r = c.Get("/health");
  EXPECT_TRUE(r && r->status == 200);
  srv->stop(std::chrono::milliseconds(0));
  t.join();
}

}  // namespace
}  // namespace dsv3::test
