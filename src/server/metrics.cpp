#include "server/metrics.h"

#include <cstdio>

#include "engine/scheduler.h"

namespace dsv3::server {

namespace {

std::string num(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.9g", x);
  return b;
}

void header(std::string& out, const std::string& name, const char* type, const std::string& help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void Histogram::observe(double x) {
  size_t i = 0;
  while (i < bounds_.size() && x > bounds_[i]) ++i;
  counts_[i]++;
  sum_ += x;
  n_++;
}

void Histogram::write(std::string& out, const std::string& name, const std::string& help) const {
  header(out, name, "histogram", help);
  uint64_t cum = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + (i < bounds_.size() ? num(bounds_[i]) : "+Inf") + "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_sum " + num(sum_) + "\n" + name + "_count " + std::to_string(n_) + "\n";
}

// Bucket bounds in seconds, as vLLM's time_to_first_token and time_per_output_token.
Metrics::Metrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}) {}

void Metrics::request(const std::string& endpoint, int status) {
  std::lock_guard lk(mu_);
  requests_[{endpoint, status}]++;
}

void Metrics::tokens(int64_t prompt, int64_t generated, int64_t cached) {
  std::lock_guard lk(mu_);
  prompt_tokens_ += uint64_t(prompt);
  cached_prompt_tokens_ += uint64_t(cached);
  generation_tokens_ += uint64_t(generated);
}

void Metrics::time_to_first_token(double seconds) {
  std::lock_guard lk(mu_);
  ttft_.observe(seconds);
}

void Metrics::inter_token_latency(double seconds, int64_t n_tokens) {
  std::lock_guard lk(mu_);
  for (int64_t i = 0; i < n_tokens; ++i) itl_.observe(seconds / double(n_tokens));
}

std::string Metrics::render(const Scheduler& sched) const {
  std::lock_guard lk(mu_);
  std::string out;
  header(out, "dsv3_requests_total", "counter", "HTTP requests answered, by endpoint and status code.");
  for (const auto& [k, n] : requests_)
    out += "dsv3_requests_total{endpoint=\"" + k.first + "\",status=\"" + std::to_string(k.second) + "\"} " +
           std::to_string(n) + "\n";
  header(out, "dsv3_prompt_tokens_total", "counter", "Prompt tokens of completed requests.");
  out += "dsv3_prompt_tokens_total " + std::to_string(prompt_tokens_) + "\n";
  header(out, "dsv3_prompt_tokens_cached_total", "counter",
         "Prompt tokens of completed requests whose KV cache was reused (prefix caching).");
  out += "dsv3_prompt_tokens_cached_total " + std::to_string(cached_prompt_tokens_) + "\n";
  header(out, "dsv3_generation_tokens_total", "counter", "Generated tokens.");
  out += "dsv3_generation_tokens_total " + std::to_string(generation_tokens_) + "\n";
  header(out, "dsv3_requests_waiting", "gauge", "Requests in the queue, not yet running.");
  out += "dsv3_requests_waiting " + std::to_string(sched.queued()) + "\n";
  header(out, "dsv3_requests_running", "gauge", "Requests holding a KV-cache slot.");
  out += "dsv3_requests_running " + std::to_string(sched.running()) + "\n";
  header(out, "dsv3_batch_size", "gauge", "Sequences in the last decode step.");
  out += "dsv3_batch_size " + std::to_string(sched.last_batch_size()) + "\n";
  header(out, "dsv3_decode_steps_total", "counter", "Batched decode steps run.");
  out += "dsv3_decode_steps_total " + std::to_string(sched.steps()) + "\n";
  ttft_.write(out, "dsv3_time_to_first_token_seconds", "Time from request arrival to its first generated token.");
  itl_.write(out, "dsv3_inter_token_latency_seconds", "Time between consecutive generated tokens of a request.");
  return out;
}

}  // namespace dsv3::server
