// Server metrics in the Prometheus text exposition format (version 0.0.4): request counts,
// tokens in and out, queue length, batch size, and latency histograms. Thread-safe.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace dsv3 {
class Scheduler;
}

namespace dsv3::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double x);  // caller holds the Metrics lock
  void write(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last is +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

class Metrics {
 public:
  Metrics();
  void request(const std::string& endpoint, int status);
  void tokens(int64_t prompt, int64_t generated, int64_t cached = 0);
  void time_to_first_token(double seconds);
  void inter_token_latency(double seconds, int64_t n_tokens);  // n tokens that arrived `seconds` apart
  // The text for GET /metrics, with the scheduler's gauges.
  std::string render(const Scheduler& sched) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0, cached_prompt_tokens_ = 0;
  Histogram ttft_, itl_;
};

}  // namespace dsv3::server
