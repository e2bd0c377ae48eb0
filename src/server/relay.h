// Relays one job's output into an HTTP response: server-sent events for stream=true, one JSON
// object otherwise. A client that goes away cancels its job (its slot is freed at the next
// scheduler step): stream writes fail, and non-streaming answers that take longer than a second
// send a space of JSON whitespace every second to find out.
#pragma once
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <memory>

#include "engine/scheduler.h"
#include "server/metrics.h"
#include "server/task.h"

namespace dsv3::server {

// Fills `res` for a submitted job. `arrived` is when the request came in (time to first token).
// `in_flight` counts responses whose body is still being written (shutdown waits for them).
void relay_job(std::shared_ptr<Job> job, const CompletionTask& task, const ResponseMeta& meta, Metrics& metrics,
               std::chrono::steady_clock::time_point arrived, std::atomic<int>& in_flight, httplib::Response& res);

}  // namespace dsv3::server
