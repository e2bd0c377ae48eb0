// Runs a shell command and captures its exit code, stdout and stderr (for end-to-end tests of
// the dsv3 binary).
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace dsv3::test {

struct CommandResult {
  int code = -1;
  std::string out, err;
};

inline CommandResult run_command(const std::string& cmd, const std::string& stdin_text = "") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path();
  const std::string tag = std::to_string(::getpid()) + "_" + std::to_string(std::rand());
  const fs::path in = dir / ("dsv3_in_" + tag), out = dir / ("dsv3_out_" + tag), err = dir / ("dsv3_err_" + tag);
  std::ofstream(in) << stdin_text;
  const std::string full = cmd + " <" + in.string() + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(full.c_str());
  CommandResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  auto slurp = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), {});
  };
  r.out = slurp(out);
  r.err = slurp(err);
  fs::remove(in);
  fs::remove(out);
  fs::remove(err);
  return r;
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace dsv3::test
