// Relays the output of a request's jobs (one per choice) into an HTTP response: server-sent
// events for stream=true, one JSON object otherwise. A client that goes away cancels its jobs
// (their slots are freed at the next scheduler step): stream writes fail, and non-streaming
// answers that take longer than a second send a space of JSON whitespace every second to find
// out.
#pragma once
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "engine/scheduler.h"
#include "server/metrics.h"
#include "server/task.h"

namespace dsv3::server {

// Fills `res` for the submitted jobs, one per choice (`task.n` of them, choice i is jobs[i]).
// `arrived` is when the request came in (time to first token). `in_flight` counts responses
// whose body is still being written (shutdown waits for them).
void relay_jobs(std::vector<std::shared_ptr<Job>> jobs, const CompletionTask& task, const ResponseMeta& meta,
                Metrics& metrics, std::chrono::steady_clock::time_point arrived, std::atomic<int>& in_flight,
                httplib::Response& res);

}  // namespace dsv3::server
