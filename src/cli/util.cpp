#include <charconv>

#include "cli/commands.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace dsv3::cli {

std::vector<int32_t> parse_ids(const std::string& s, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t p = 0;
  while (p <= s.size()) {
    size_t q = s.find(',', p);
    if (q == std::string::npos) q = s.size();
    std::string tok = s.substr(p, q - p);
    while (!tok.empty() && tok.front() == ' ') tok.erase(tok.begin());
    while (!tok.empty() && tok.back() == ' ') tok.pop_back();
    int32_t v = 0;
    auto [end, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    DSV3_CHECK(!tok.empty() && ec == std::errc() && end == tok.data() + tok.size() && v >= 0, flag,
               ": '", tok, "' is not a token id (expected comma-separated non-negative integers)");
    ids.push_back(v);
    p = q + 1;
  }
  DSV3_CHECK(!ids.empty(), flag, ": no token ids given");
  return ids;
}

void add_threads_option(CLI::App* cmd, int& threads) {
  threads = ThreadPool::default_threads();
  cmd->add_option("-t,--threads", threads, "Worker threads (default: all hardware threads)")
      ->check(CLI::Range(1, 1024));
}

}  // namespace dsv3::cli
