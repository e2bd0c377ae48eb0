// Conformance with llama.cpp's own GGUF files (testdata/gguf/kjv/CASE.md): `dsv3 logits --model
// FILE.gguf` against the logits of the exactly dequantized weights. With the scalar reference
// kernels: mean KL below 1e-5 and the same greedy (argmax) token at every position. With the
// default kernels: at most half of llama.cpp's own KL from the exact logits, and top-1
// agreement at least llama.cpp's.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/npy.h"
#include "tests/cli/run_command.h"
#include "tests/io/io_test_util.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
const fs::path kKjv = fs::path(DSV3_TESTDATA_DIR) / "gguf/kjv";

struct Agreement {
  double mean_kl = 0;  // mean over positions of KL(reference || x), natural log
  double top1 = 0;     // share of positions with the same argmax
  int64_t first_top1_mismatch = -1;
};

Agreement compare(const NpyArray& ref, const NpyArray& x) {
  const int64_t n = ref.shape.at(0), v = ref.shape.at(1);
  Agreement a;
  int64_t same = 0;
  for (int64_t p = 0; p < n; ++p) {
    const float* r = &ref.data[size_t(p * v)];
    const float* q = &x.data[size_t(p * v)];
    auto log_softmax = [v](const float* z, std::vector<double>& out) {
      double m = -1e300, s = 0;
      for (int64_t i = 0; i < v; ++i) m = std::max(m, double(z[i]));
      for (int64_t i = 0; i < v; ++i) s += std::exp(double(z[i]) - m);
      out.resize(size_t(v));
      for (int64_t i = 0; i < v; ++i) out[size_t(i)] = double(z[i]) - m - std::log(s);
    };
    std::vector<double> lr, lq;
    log_softmax(r, lr);
    log_softmax(q, lq);
    double kl = 0;
    for (int64_t i = 0; i < v; ++i) kl += std::exp(lr[size_t(i)]) * (lr[size_t(i)] - lq[size_t(i)]);
    a.mean_kl += kl / double(n);
    const bool eq = std::max_element(r, r + v) - r == std::max_element(q, q + v) - q;
    same += eq;
    if (!eq && a.first_top1_mismatch < 0) a.first_top1_mismatch = p;
  }
  a.top1 = double(same) / double(n);
  return a;
}

// `dsv3 logits` on the case's prompt, with DSV3_KERNELS=`kernels` (empty: the default) and the
// latent cache in `kv_cache` (f32 for the reference path; bf16 is the default).
NpyArray dsv3_logits(const std::string& file, const std::string& kernels, const std::string& kv_cache) {
  std::ifstream f(kKjv / "prompt.json");
  const auto prompt = nlohmann::json::parse(f)["prompt_ids"].get<std::vector<int32_t>>();
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  testing::TempDir tmp("gguf-conf");
  const std::string out = tmp.file("logits.npy");
  const std::string env = kernels.empty() ? "" : "DSV3_KERNELS=" + kernels + " ";
  const auto r = test::run_command(env + DSV3_BINARY + std::string(" logits --threads 2 --model ") +
                                   (kKjv / (file + ".gguf")).string() + " --ids " + ids + " --kv-cache " + kv_cache + " --out " + out);
  EXPECT_EQ(r.code, 0) << r.err;
  return read_npy_f32(out);
}

class KjvGguf : public ::testing::TestWithParam<std::string> {};

TEST_P(KjvGguf, ScalarKernelsGiveTheExactDequantLogits) {
  const NpyArray exact = read_npy_f32((kKjv / (GetParam() + ".exact_logits.npy")).string());
  const NpyArray ours = dsv3_logits(GetParam(), "scalar", "f32");
  ASSERT_EQ(ours.shape, exact.shape);
  const Agreement a = compare(exact, ours);
  std::printf("%s scalar: mean KL %.3g vs exact, top-1 %.4f\n", GetParam().c_str(), a.mean_kl, a.top1);
  EXPECT_LT(a.mean_kl, 1e-5);
  // Greedy decoding picks the argmax: the same token at every one of the 127 positions.
  EXPECT_EQ(a.first_top1_mismatch, -1);
}

// The files whose every tensor type has kernels in this build.
INSTANTIATE_TEST_SUITE_P(Gguf, KjvGguf, ::testing::Values("kjv-BF16", "kjv-Q8_0", "kjv-Q6_K", "kjv-Q4_K_M"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

}  // namespace
}  // namespace dsv3
