// A progress bar on stderr for long work (synthesis, loading, benchmarks). Redraws in place on a
// terminal; elsewhere prints a line at most every 10%, so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace dsv3 {

class Progress {
 public:
  Progress(std::string label, uint64_t total, std::string unit = "");
  ~Progress();
  void advance(uint64_t n);
  void finish();

 private:
  void draw(bool force);
  std::string label_, unit_;
  uint64_t total_, done_ = 0;
  bool tty_, finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace dsv3
