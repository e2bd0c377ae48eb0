#include "io/gguf_model_metadata.h"

#include <cmath>
#include <cstdio>

#include "io/gguf_writer.h"

namespace dsv3 {

namespace {

std::string fixed_digits(double v, const char* suffix) {
  const long long whole = std::llround(v);
  const int digits = whole == 0 ? 0 : int(std::to_string(whole).size());
  const int fix = std::max(2 - digits, 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", fix, v, suffix);
  return buf;
}

}  // namespace

std::string gguf_size_label(uint64_t shared_params, uint64_t expert_params, int64_t n_experts) {
  const double n = double(shared_params + (n_experts > 0 ? expert_params : 0));
  const std::string size = n > 1e12 ? fixed_digits(n * 1e-12, "T")
                           : n > 1e9 ? fixed_digits(n * 1e-9, "B")
                           : n > 1e6 ? fixed_digits(n * 1e-6, "M")
                                     : fixed_digits(n * 1e-3, "K");
  return n_experts > 0 ? std::to_string(n_experts) + "x" + size : size;
}

void add_deepseek2_metadata(GgufWriter& w, const ModelConfig& c, const gguf::ModelInfo& info) {
  for (const auto& [key, value] : gguf::metadata_from_config(c, info)) w.set(key, value);
}

}  // namespace dsv3
