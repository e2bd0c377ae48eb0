// libFuzzer target for the safetensors header parser (io/safetensors.cpp): any input must either
// parse into a header whose tensors all lie inside the data section without overlapping, or be
// rejected with a dsv3::Error. Crashes, sanitizer reports and other exceptions are findings.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <span>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors_header: %s\n", what);
  std::abort();
}

// What the parser promises about a header it accepts (safetensors.h).
void check_invariants(const dsv3::SafetensorsHeader& h, size_t file_size) {
  if (h.data_offset < 8 || h.data_offset > file_size) finding("data_offset outside the file");
  const uint64_t data_size = file_size - h.data_offset;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& e : h.tensors) {
    if (e.begin > e.end || e.end > data_size) finding("accepted a range outside the data section");
    if (e.shape.rank < 0 || e.shape.rank > dsv3::Shape::kMaxDims) finding("accepted a bad rank");
    // Shape::numel() is what every consumer multiplies by; it must not overflow (UBSan checks it).
    const int64_t numel = e.shape.numel();
    if (numel < 0 || uint64_t(numel) * dsv3::dtype_size(e.dtype) != e.end - e.begin)
      finding("accepted a tensor whose shape x dtype size differs from its byte range");
    if (e.end > e.begin) ranges.emplace_back(e.begin, e.end);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) finding("accepted overlapping ranges");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A heap copy of exactly `size` bytes, so ASan flags any read past the end of the "file".
  std::vector<uint8_t> file(data, data + size);
  try {
    const auto h = dsv3::parse_safetensors_header(std::span<const uint8_t>(file.data(), file.size()), "fuzz.safetensors");
    check_invariants(h, file.size());
  } catch (const dsv3::Error&) {
    // Rejected with a message: the expected outcome for bad input.
  }
  return 0;
}
