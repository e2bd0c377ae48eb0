// Conformance with llama.cpp's own GGUF files (testdata/gguf/kjv/CASE.md): `dsv3 logits --model
// FILE.gguf` against the logits of the exactly dequantized weights. With the scalar reference
// kernels: mean KL below 1e-5 and the same greedy (argmax) token at every position. With the
// default kernels and cache: at most half of llama.cpp's own KL from the exact logits, and top-1
// agreement at least llama.cpp's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/config.h"
#include "io/npy.h"
#include "tests/cli/run_command.h"
#include "tests/io/io_test_util.h"
#include "tests/quantize/gguf_to_hf.h"

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
// latent cache in `kv_cache` (f32 for the reference path; empty: the default, f16 for GGUF files).
// The case's prompt (127 ids) as "id,id,...".
std::string prompt_ids_csv() {
  std::ifstream f(kKjv / "prompt.json");
  const auto prompt = nlohmann::json::parse(f)["prompt_ids"].get<std::vector<int32_t>>();
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  return ids;
}

NpyArray dsv3_logits(const std::string& file, const std::string& kernels, const std::string& kv_cache) {
  const std::string ids = prompt_ids_csv();
  testing::TempDir tmp("gguf-conf");
  const std::string out = tmp.file("logits.npy");
  const std::string env = kernels.empty() ? "" : "DSV3_KERNELS=" + kernels + " ";
  const auto r = test::run_command(env + DSV3_BINARY + std::string(" logits --threads 2 --model ") +
                                   (kKjv / (file + ".gguf")).string() + " --ids " + ids +
                                   (kv_cache.empty() ? "" : " --kv-cache " + kv_cache) + " --out " + out);
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

// Issue 18's target for the defaults (the kernels this CPU gets, the GGUF default F16 latent
// cache): at most half of llama.cpp's mean KL from the exact-dequant logits, and top-1 agreement
// at least llama.cpp's. Measured on an AMD EPYC (Zen 5, avx512bf16): BF16 1.0e-6 (llama.cpp
// 3.7e-6), Q8_0 7.2e-8 (2.3e-4), Q6_K 3.4e-5 (5.6e-4), Q4_K_M 6.4e-8 (3.5e-3), top-1 1.000 for
// all four (llama.cpp 0.992, 1.000, 1.000, 0.961). The activation precision per tensor type that
// gets there is the table in model/gguf_weights.cpp.
TEST_P(KjvGguf, DefaultsAreCloserToTheExactDequantThanLlamaCpp) {
  const NpyArray exact = read_npy_f32((kKjv / (GetParam() + ".exact_logits.npy")).string());
  const NpyArray llama = read_npy_f32((kKjv / (GetParam() + ".llama_logits.npy")).string());
  const NpyArray ours = dsv3_logits(GetParam(), "", "");
  ASSERT_EQ(ours.shape, exact.shape);
  const Agreement a = compare(exact, ours), l = compare(exact, llama);
  std::printf("%s defaults: mean KL %.3g vs exact, top-1 %.4f; llama.cpp %.3g, %.4f\n", GetParam().c_str(), a.mean_kl,
              a.top1, l.mean_kl, l.top1);
  EXPECT_LE(a.mean_kl, 0.5 * l.mean_kl);
  EXPECT_GE(a.top1, l.top1);
}

// Issue 18: greedy generation from the GGUF equals greedy generation from its exact-dequant
// weights over 32 tokens, in the reference path (scalar kernels, F32 cache), continuing the
// case's prompt. The exact-dequant model is the file's tensors dequantized by ggml's
// dequantizers into a float32 HF checkpoint (tests/quantize/gguf_to_hf.h, the route the
// quantizer's quality test takes); that it is CASE.md's exact-dequant model is checked first:
// its logits on the prompt are within mean KL 1e-5 of exact_logits.npy, every argmax the same.
TEST_P(KjvGguf, GreedyGenerationEqualsTheExactDequantModels) {
  const fs::path kjv_model = fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv";
  const ModelConfig c = ModelConfig::from_file((kjv_model / "config.json").string());
  testing::TempDir tmp("gguf-greedy");
  const fs::path exact_dir = tmp.path() / "exact";
  testing::write_exact_dequant_checkpoint((kKjv / (GetParam() + ".gguf")).string(), c,
                                          (kjv_model / "config.json").string(), exact_dir);
  const std::string ids = prompt_ids_csv();
  const std::string ref_env = "DSV3_KERNELS=scalar ";
  const std::string out = tmp.file("exact_logits.npy");
  const auto r = test::run_command(ref_env + DSV3_BINARY + std::string(" logits --threads 2 --kv-cache f32 --model ") +
                                   exact_dir.string() + " --ids " + ids + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  const Agreement anchor = compare(read_npy_f32((kKjv / (GetParam() + ".exact_logits.npy")).string()), read_npy_f32(out));
  EXPECT_LT(anchor.mean_kl, 1e-5);
  EXPECT_EQ(anchor.first_top1_mismatch, -1);
  auto greedy = [&](const std::string& model) {
    const auto g = test::run_command(ref_env + DSV3_BINARY + std::string(" generate --threads 2 --kv-cache f32 --ignore-eos -n 32 --model ") +
                                     model + " --prompt-ids " + ids);
    EXPECT_EQ(g.code, 0) << g.err;
    return g.out;
  };
  const std::string from_gguf = greedy((kKjv / (GetParam() + ".gguf")).string());
  const std::string from_exact = greedy(exact_dir.string());
  EXPECT_EQ(std::count(from_gguf.begin(), from_gguf.end(), ',') + 1, 32) << from_gguf;
  EXPECT_EQ(from_gguf, from_exact);
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
