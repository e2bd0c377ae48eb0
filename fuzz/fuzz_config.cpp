// libFuzzer target for the config.json parser (io/config.cpp): bytes are parsed as JSON, then
// validated by ModelConfig::from_json. Rejection (a nlohmann exception while parsing, or a
// dsv3::Error) is fine; crashes, sanitizer reports and other exceptions are findings. A config
// that is accepted must read back unchanged after to_json().
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/config.h"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_config: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {  // parse_error, or out_of_range for 1e999
    return 0;
  }
  dsv3::ModelConfig c;
  try {
    c = dsv3::ModelConfig::from_json(j, "fuzz/config.json");
  } catch (const dsv3::Error&) {
    return 0;
  }
  // A config the parser accepted, written back and read again, must be accepted and equal.
  dsv3::ModelConfig again;
  try {
    again = dsv3::ModelConfig::from_json(c.to_json(), "fuzz/config.json (round trip)");
  } catch (const dsv3::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    finding("to_json() of an accepted config is rejected by from_json()");
  }
  if (again.to_json() != c.to_json()) finding("to_json -> from_json changes the config");
  return 0;
}
