#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace dsv3 {

Progress::Progress(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total ? total : 1), tty_(::isatty(2)),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::advance(uint64_t n) {
  done_ += n;
  draw(false);
}

void Progress::finish() {
  if (finished_) return;
  done_ = total_;
  draw(true);
  if (tty_) std::fputc('\n', stderr);
  finished_ = true;
}

void Progress::draw(bool force) {
  const auto now = std::chrono::steady_clock::now();
  const double frac = double(std::min(done_, total_)) / double(total_);
  const double secs = std::chrono::duration<double>(now - start_).count();
  auto scaled = [&](uint64_t v) {
    if (unit_ == "B") return std::to_string(v >> 20) + " MiB";
    return std::to_string(v) + (unit_.empty() ? "" : " " + unit_);
  };
  if (tty_) {
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const int width = 30, fill = int(frac * width);
    std::fprintf(stderr, "\r%s [%s%s] %3d%% %s / %s  %.1fs", label_.c_str(), std::string(size_t(fill), '#').c_str(),
                 std::string(size_t(width - fill), ' ').c_str(), int(frac * 100), scaled(done_).c_str(),
                 scaled(total_).c_str(), secs);
    std::fflush(stderr);
  } else {
    // Quick jobs stay silent in logs; long ones report every 10%.
    if (secs < 1.0) return;
    const int decile = int(frac * 10);
    if (decile == last_decile_) return;
    last_decile_ = decile;
    std::fprintf(stderr, "%s: %d%% (%s / %s, %.1fs)\n", label_.c_str(), decile * 10, scaled(done_).c_str(),
                 scaled(total_).c_str(), secs);
  }
}

}  // namespace dsv3
