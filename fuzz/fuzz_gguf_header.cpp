// libFuzzer target for the GGUF header parser (io/gguf.cpp) and the deepseek2 metadata ->
// ModelConfig mapping (io/gguf_names.cpp): any input must either parse into a header whose
// tensors all lie aligned inside the data section without overlapping, or be rejected with a
// dsv3::Error. Crashes, sanitizer reports and other exceptions are findings.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_names.h"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_gguf_header: %s\n", what);
  std::abort();
}

// What the parser promises about a header it accepts (gguf.h).
void check_invariants(const dsv3::GgufHeader& h, size_t file_size) {
  if (!h.tensors.empty() && h.data_offset > file_size) finding("data section starts beyond the file");
  if (h.alignment == 0 || (h.alignment & (h.alignment - 1)) != 0) finding("accepted a bad alignment");
  const uint64_t data_size = file_size > h.data_offset ? file_size - h.data_offset : 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& t : h.tensors) {
    if (t.offset % h.alignment != 0) finding("accepted a misaligned tensor");
    if (t.offset > data_size || t.nbytes > data_size - t.offset) finding("accepted a tensor outside the data section");
    const int64_t numel = t.ne.numel();  // must not overflow (UBSan checks it)
    if (numel < 0 || t.ne[0] % t.type.block != 0) finding("accepted a bad shape");
    if (uint64_t(numel) / uint64_t(t.type.block) * uint64_t(t.type.block_bytes) != t.nbytes)
      finding("accepted a tensor whose type x shape differs from its byte count");
    if (t.nbytes > 0) ranges.emplace_back(t.offset, t.offset + t.nbytes);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) finding("accepted overlapping tensors");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A heap copy of exactly `size` bytes, so ASan flags any read past the end of the "file".
  std::vector<uint8_t> file(data, data + size);
  try {
    const auto h = dsv3::parse_gguf_header(std::span<const uint8_t>(file.data(), file.size()), "fuzz.gguf");
    check_invariants(h, file.size());
    try {
      (void)dsv3::gguf::config_from_metadata(h.metadata, true, size % 2 == 0);
    } catch (const dsv3::Error&) {
    }
  } catch (const dsv3::Error&) {
    // Rejected with a message: the expected outcome for bad input.
  }
  return 0;
}
