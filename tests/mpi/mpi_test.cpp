// dsv3 under mpirun, one thread per rank: the collectives' plumbing; the same answers from 1, 2
// and 3 ranks (golden logits within the case's TOL, identical greedy ids and MTP drafts, a
// synthetic FP8 model whose splits fall inside scale blocks, the trained models/dsv3-kjv); bad
// layouts, a checkpoint only one rank cannot read, and a rank killed mid-generation end the job
// with one clear line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/npy.h"
#include "io/safetensors.h"
#include "tests/cli/run_command.h"

namespace dsv3 {
namespace {

using nlohmann::json;
using test::run_command;
namespace fs = std::filesystem;

// The golden tolerances are a float32 engine's: float32 kernels and an F32 latent cache (the
// defaults round activations and the cache to BF16).
const std::string kDsv3 = std::string(DSV3_BINARY) + " --kernels f32";
const std::string kF32Cache = " --kv-cache f32";

std::string mpirun(int np) { return std::string(DSV3_MPIRUN) + " -np " + std::to_string(np) + " "; }
std::string golden(const std::string& name) { return std::string(DSV3_TESTDATA_DIR) + "/golden/" + name; }

json expected(const std::string& name) {
  std::ifstream f(golden(name) + "/expected.json");
  return json::parse(f);
}
double tolerance(const std::string& name) {
  std::ifstream f(golden(name) + "/TOL");
  double t = 0;
  f >> t;
  return t;
}
std::string join(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

// Max |a - b| over a [rows, vocab] npy file and expected rows.
double max_diff(const std::string& npy, const json& rows) {
  const NpyArray a = read_npy_f32(npy);
  double d = 0;
  size_t k = 0;
  for (const auto& row : rows)
    for (const auto& v : row) d = std::max(d, std::abs(double(a.data.at(k++)) - v.get<double>()));
  EXPECT_EQ(k, a.data.size());
  return d;
}

// The drafts or greedy tokens of logits rows: each row's argmax; and the smallest top-1 - top-2
// gap over the rows from `from` on.
std::vector<int> argmaxes(const NpyArray& a) {
  const size_t vocab = size_t(a.shape[1]);
  std::vector<int> ids;
  for (size_t r = 0; r < size_t(a.shape[0]); ++r) {
    const float* row = &a.data[r * vocab];
    ids.push_back(int(std::max_element(row, row + vocab) - row));
  }
  return ids;
}
double smallest_margin(const NpyArray& a, size_t from) {
  const size_t vocab = size_t(a.shape[1]);
  double m = 1e30;
  for (size_t r = from; r < size_t(a.shape[0]); ++r) {
    std::vector<float> row(a.data.begin() + long(r * vocab), a.data.begin() + long((r + 1) * vocab));
    std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<>());
    m = std::min(m, double(row[0]) - row[1]);
  }
  return m;
}
double max_abs_diff(const NpyArray& a, const NpyArray& b) {
  EXPECT_EQ(a.data.size(), b.data.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.data.size(), b.data.size()); ++i) d = std::max(d, std::abs(double(a.data[i]) - b.data[i]));
  return d;
}
// Mean over rows of KL(softmax(p) || softmax(q)).
double mean_kl(const NpyArray& p, const NpyArray& q) {
  const size_t vocab = size_t(p.shape[1]), rows = size_t(p.shape[0]);
  double sum = 0;
  for (size_t r = 0; r < rows; ++r) {
    const float *a = &p.data[r * vocab], *b = &q.data[r * vocab];
    const double ma = *std::max_element(a, a + vocab), mb = *std::max_element(b, b + vocab);
    double za = 0, zb = 0;
    for (size_t i = 0; i < vocab; ++i) za += std::exp(a[i] - ma), zb += std::exp(b[i] - mb);
    for (size_t i = 0; i < vocab; ++i) {
      const double la = a[i] - ma - std::log(za), lb = b[i] - mb - std::log(zb);
      sum += std::exp(la) * (la - lb);
    }
  }
  return sum / double(rows);
}

TEST(MpiCollectives, EveryOperationOnOneTwoAndThreeRanks) {
  for (int np : {1, 2, 3}) {
    const auto r = run_command(mpirun(np) + DSV3_COLLECTIVES_PROBE);
    EXPECT_EQ(r.code, 0) << "np " << np << "\n" << r.out << r.err;
    for (int rank = 0; rank < np; ++rank)
      EXPECT_NE(r.out.find("ok rank " + std::to_string(rank) + " of " + std::to_string(np)), std::string::npos)
          << "np " << np << "\n" << r.out << r.err;
  }
}

TEST(MpiCollectives, ProbeAloneIsRankZeroOfOne) {
  const auto r = run_command(DSV3_COLLECTIVES_PROBE);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("ok rank 0 of 1"), std::string::npos) << r.out;
}

// tiny-v3: 4 heads (np 3: 2, 1, 1; wo's split falls inside its 128-column scale block), 16
// experts (6, 5, 5), vocabulary 1024 (342, 341, 341).
TEST(MpiInference, GoldenLogitsWithinTolOnOneTwoAndThreeRanks) {
  const json e = expected("tiny-v3");
  const double tol = tolerance("tiny-v3");
  std::vector<int> ids = e["prompt_ids"];
  for (int np : {1, 2, 3}) {
    const std::string out = (fs::temp_directory_path() / ("logits" + std::to_string(np) + ".npy")).string();
    const auto r = run_command(mpirun(np) + kDsv3 + " logits -t 1" + kF32Cache + " --model " + golden("tiny-v3") + " --ids " +
                               join(ids) + " --out " + out);
    ASSERT_EQ(r.code, 0) << "np " << np << "\n" << r.err;
    EXPECT_LE(max_diff(out, e["logits"]), tol) << "np " << np;
  }
}

// mtp-v3: greedy ids and the MTP module's logits (so its drafts) on 1, 2 and 3 ranks, and
// speculative decoding (MTP drafts verified by the main model) giving the same ids.
TEST(MpiInference, GreedyIdsAndMtpDraftsOnOneTwoAndThreeRanks) {
  const json e = expected("mtp-v3");
  const double tol = tolerance("mtp-v3");
  std::vector<int> ids = e["prompt_ids"], greedy = e["greedy"];
  for (int np : {1, 2, 3}) {
    const auto g = run_command(mpirun(np) + kDsv3 + " generate -t 1" + kF32Cache + " --model " + golden("mtp-v3") + " --prompt-ids " +
                               join(ids) + " -n " + std::to_string(greedy.size()) + " --ignore-eos");
    ASSERT_EQ(g.code, 0) << "np " << np << "\n" << g.err;
    EXPECT_EQ(g.out, join(greedy) + "\n") << "np " << np;
    const auto s = run_command(mpirun(np) + kDsv3 + " generate -t 1" + kF32Cache + " --model " + golden("mtp-v3") + " --prompt-ids " +
                               join(ids) + " -n " + std::to_string(greedy.size()) + " --ignore-eos --speculative mtp:2");
    ASSERT_EQ(s.code, 0) << "np " << np << "\n" << s.err;
    EXPECT_EQ(s.out, join(greedy) + "\n") << "np " << np;
    const std::string out = (fs::temp_directory_path() / ("mtp" + std::to_string(np) + ".npy")).string();
    const auto m = run_command(mpirun(np) + kDsv3 + " logits -t 1 --mtp" + kF32Cache + " --model " + golden("mtp-v3") + " --ids " +
                               join(ids) + " --out " + out);
    ASSERT_EQ(m.code, 0) << "np " << np << "\n" << m.err;
    EXPECT_LE(max_diff(out, e["mtp_logits"]), tol) << "np " << np;
    const std::vector<int> drafts = argmaxes(read_npy_f32(out));  // the argmax of each MTP row
    if (np == 1) {
      std::ofstream(fs::temp_directory_path() / "drafts1") << join(drafts);
    } else {
      std::ifstream f(fs::temp_directory_path() / "drafts1");
      std::string one;
      f >> one;
      EXPECT_EQ(join(drafts), one) << "np " << np;
    }
  }
}

// A synthetic FP8 model (dsv3 synth --preset tiny): np 3 cuts q_b_proj, kv_b_proj, the
// vocabulary and the shared expert inside 128x128 scale blocks. Logits within 1e-4 of one
// process's and the same greedy ids.
TEST(MpiInference, SyntheticFp8UnevenSplitsMatchOneProcess) {
  const std::string dir = (fs::temp_directory_path() / "synth_fp8").string();
  const auto s = run_command(std::string(DSV3_BINARY) + " synth --preset tiny --dtype fp8 --out " + dir);
  ASSERT_EQ(s.code, 0) << s.err;
  const std::string ids = "0,5,17,300,42,1000,7,64,900,3";
  std::string ids1;
  for (int np : {1, 3}) {
    const std::string out = (fs::temp_directory_path() / ("synth" + std::to_string(np) + ".npy")).string();
    const auto r = run_command(mpirun(np) + kDsv3 + " logits -t 1" + kF32Cache + " --model " + dir + " --ids " + ids + " --out " + out);
    ASSERT_EQ(r.code, 0) << "np " << np << "\n" << r.err;
    const auto g = run_command(mpirun(np) + kDsv3 + " generate -t 1" + kF32Cache + " --model " + dir + " --prompt-ids " + ids +
                               " -n 12 --ignore-eos");
    ASSERT_EQ(g.code, 0) << "np " << np << "\n" << g.err;
    if (np == 1) {
      ids1 = g.out;
      continue;
    }
    EXPECT_EQ(g.out, ids1);
    const NpyArray a = read_npy_f32(out), b = read_npy_f32((fs::temp_directory_path() / "synth1.npy").string());
    ASSERT_EQ(a.data.size(), b.data.size());
    double d = 0;
    for (size_t i = 0; i < a.data.size(); ++i) d = std::max(d, std::abs(double(a.data[i]) - b.data[i]));
    EXPECT_LE(d, 1e-4);
  }
}

// A GGUF file as llama.cpp writes it (kv_b_proj split into attn_k_b and attn_v_b, experts
// stacked, K-quant blocks of 256 columns): 2 ranks give one process's logits within 1e-4 and
// the same greedy ids. The scalar kernels dequantize to float32 exactly, so only the sums'
// order differs (measured 1.7e-5 on logits up to 18); the SIMD block kernels quantize
// activations per 256 columns of each rank's slice, which moves logits by up to 1.4e-3.
TEST(MpiInference, GgufSplitKvLayoutMatchesOneProcess) {
  const std::string dsv3 = std::string(DSV3_BINARY) + " --kernels scalar";
  const std::string model = std::string(DSV3_TESTDATA_DIR) + "/gguf/kjv/kjv-Q4_K_M.gguf";
  const std::string ids = "1,40,300,17,1000,5,64,900,3,200";
  std::string ids1;
  std::vector<NpyArray> logits;
  for (int np : {1, 2}) {
    const std::string out = (fs::temp_directory_path() / ("gguf_q4km_np" + std::to_string(np) + ".npy")).string();
    const auto r = run_command(mpirun(np) + dsv3 + " logits -t 1" + kF32Cache + " --model " + model + " --ids " + ids + " --out " + out);
    ASSERT_EQ(r.code, 0) << "np " << np << "\n" << r.err;
    logits.push_back(read_npy_f32(out));
    const auto g = run_command(mpirun(np) + dsv3 + " generate -t 1" + kF32Cache + " --model " + model + " --prompt-ids " + ids +
                               " -n 12 --ignore-eos");
    ASSERT_EQ(g.code, 0) << "np " << np << "\n" << g.err;
    if (np == 1) ids1 = g.out;
    else EXPECT_EQ(g.out, ids1);
  }
  ASSERT_EQ(logits[0].data.size(), logits[1].data.size());
  double d = 0;
  for (size_t i = 0; i < logits[0].data.size(); ++i) d = std::max(d, std::abs(double(logits[0].data[i]) - logits[1].data[i]));
  EXPECT_LE(d, 1e-4);
}

// The trained model (models/dsv3-kjv, FP8): 4 heads (np 3: 2, 1, 1; o_proj's cut falls inside its
// one 128-column block), 16 experts (6, 5, 5), vocabulary 2048 (683, 683, 682), a shared expert of
// 128 units (cut inside its scale block). With the float32 kernels, 1, 2 and 3 ranks give the
// same greedy ids, the same ids with MTP speculation, and the same MTP drafts; logits agree within
// 1e-4. Ranks change only how float32 sums are grouped (a rank's partial products, then the
// ordered sum over ranks): measured up to 5.7e-6 on logits up to 17.6, a few float32 ulps; 1e-4
// leaves 17x. Equal ids then follow from the text: its smallest top-2 gaps on the greedy path and
// among the drafts (checked here; measured 0.029 and 0.006) are far above 2 x 1e-4, so no argmax
// can move.
// The default kernels (BF16 activations, docs/kernels.md) are not held to equal ids: a split
// changes where activations are rounded to BF16 (o_proj's and the shared expert's cut slices run
// dequantized, and an input that moved by an ulp can round the other way), and one flipped
// rounding moves a logit by up to BF16's 2^-8 relative: measured max |diff| 0.044 on this text
// (0.30 on another, where a router near-tie picked another expert), against top-2 gaps down to
// 0.024 on this greedy path. Their ids agreed on 1, 2 and 3 ranks here, but gaps that small can
// flip, so the test holds them to what the split costs in distribution instead: mean KL between
// one process and N ranks below 1e-3 (measured 5.4e-6; BF16 against float32 costs 1.4e-4).
TEST(MpiInference, TrainedKjvSameAnswerOnOneTwoAndThreeRanks) {
  const std::string model = (fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv").string();
  // "And Jesus answered and said unto them, Verily I say unto you" with BOS.
  const std::string prompt = "0,299,668,883,270,393,323,340,47,35,89,269,985,305,441,323,368";
  const size_t prompt_len = 17;
  const double tol = 1e-4;
  const std::string dflt = std::string(DSV3_BINARY);
  std::string greedy1;
  NpyArray logits1, mtp1, dflt1;
  for (int np : {1, 2, 3}) {
    const std::string run = mpirun(np) + kDsv3 + " generate -t 1" + kF32Cache + " --model " + model + " --prompt-ids " +
                            prompt + " -n 32 --ignore-eos";
    const auto g = run_command(run);
    ASSERT_EQ(g.code, 0) << "np " << np << "\n" << g.err;
    const auto s = run_command(run + " --speculative mtp:2");
    ASSERT_EQ(s.code, 0) << "np " << np << "\n" << s.err;
    EXPECT_EQ(s.out, g.out) << "np " << np;
    if (np == 1) greedy1 = g.out;
    EXPECT_EQ(g.out, greedy1) << "np " << np;

    // Logits of the main model and of the MTP module along the prompt and the greedy answer.
    const std::string ids = prompt + "," + greedy1.substr(0, greedy1.find('\n'));
    const fs::path dir = fs::temp_directory_path();
    const std::string out = (dir / ("kjv_np" + std::to_string(np) + ".npy")).string();
    const std::string mtp = (dir / ("kjv_mtp_np" + std::to_string(np) + ".npy")).string();
    const std::string def = (dir / ("kjv_default_np" + std::to_string(np) + ".npy")).string();
    const auto l = run_command(mpirun(np) + kDsv3 + " logits -t 1" + kF32Cache + " --model " + model + " --ids " + ids + " --out " + out);
    ASSERT_EQ(l.code, 0) << "np " << np << "\n" << l.err;
    const auto m = run_command(mpirun(np) + kDsv3 + " logits -t 1 --mtp" + kF32Cache + " --model " + model + " --ids " + ids +
                               " --out " + mtp);
    ASSERT_EQ(m.code, 0) << "np " << np << "\n" << m.err;
    const auto d = run_command(mpirun(np) + dflt + " logits -t 1 --model " + model + " --ids " + ids + " --out " + def);
    ASSERT_EQ(d.code, 0) << "np " << np << "\n" << d.err;
    const NpyArray logits = read_npy_f32(out), drafts = read_npy_f32(mtp), defaults = read_npy_f32(def);
    if (np == 1) {
      logits1 = logits, mtp1 = drafts, dflt1 = defaults;
      // The text's precondition: no near-tie on the greedy path or among the drafts.
      const double gap = smallest_margin(logits1, prompt_len - 1), draft_gap = smallest_margin(mtp1, 0);
      std::printf("np 1: smallest top-2 gap on the greedy path %.3g, among the drafts %.3g\n", gap, draft_gap);
      EXPECT_GT(gap, 2 * tol);
      EXPECT_GT(draft_gap, 2 * tol);
      continue;
    }
    const double dl = max_abs_diff(logits, logits1), dm = max_abs_diff(drafts, mtp1), kl = mean_kl(dflt1, defaults);
    std::printf("np %d: float32 logits max |diff| %.3g, MTP logits %.3g; default kernels mean KL %.3g, max |diff| %.3g\n", np,
                dl, dm, kl, max_abs_diff(defaults, dflt1));
    EXPECT_LE(dl, tol) << "np " << np;
    EXPECT_LE(dm, tol) << "np " << np;
    EXPECT_EQ(argmaxes(drafts), argmaxes(mtp1)) << "np " << np;
    EXPECT_LT(kl, 1e-3) << "np " << np;
  }
}

// Memory: every rank maps the whole checkpoint but pages in only what it reads. After `bench`
// (which pages in the rank's share of the weights, then prefills and decodes), each rank's
// resident bytes of the mapping (smaps Rss, bench's weights_resident_bytes) lie between
//  - below: the pages of its own block of routed experts and of the replicated tensors (norms,
//    q_a_proj, kv_a_proj_with_mqa, the router), all of which it must have read, and
//  - above: its experts and every non-expert tensor (and the header), each widened to the
//    2 MiB-aligned windows around it: the page cache holds a written file in folios of up to
//    PMD size (2 MiB), and a fault maps the whole folio (measured here: touching one byte maps
//    2 MiB). The split tensors (heads, vocabulary, dense MLP, shared expert) fall in between.
// The model's routed experts are 93% of its 54 MB: one process holds the whole file, 2 ranks at
// most 62% of it each (measured 56-61%), 3 ranks at most 54% (41-52%).
TEST(MpiMemory, EachRankHoldsItsExpertsAndReplicatedTensorsOnly) {
  const fs::path dir = fs::temp_directory_path();
  json c = json::parse(std::ifstream(fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv" / "config.json"));
  c.erase("dsv3_trained");
  // 3 layers (1 dense, 2 MoE) of 64 experts of 3 x [512, 256] FP8 (128 KiB each).
  c.update(json{{"num_hidden_layers", 3}, {"n_routed_experts", 64}, {"moe_intermediate_size", 512},
                {"num_experts_per_tok", 8}, {"n_group", 8}, {"topk_group", 4}, {"intermediate_size", 512},
                {"num_nextn_predict_layers", 0}, {"max_position_embeddings", 256}});
  std::ofstream(dir / "memory_config.json") << c.dump();
  const std::string model = (dir / "memory_model").string();
  const auto s = run_command(std::string(DSV3_BINARY) + " synth --config " + (dir / "memory_config.json").string() +
                             " --dtype fp8 --out " + model);
  ASSERT_EQ(s.code, 0) << s.err;
  const SafetensorsFile file(model + "/model-00001-of-00001.safetensors");
  const uint64_t file_bytes = file.bytes().size();
  const int64_t experts = c["n_routed_experts"];

  for (int np : {1, 2, 3}) {
    const auto b = run_command(mpirun(np) + DSV3_BINARY + " bench -t 1 --model " + model +
                               " -p 8 -n 2 --batch 1 --speculative off --json");
    ASSERT_EQ(b.code, 0) << "np " << np << "\n" << b.err;
    const json bj = json::parse(b.out);
    const std::vector<uint64_t> resident = bj["weights_resident_bytes"];
    ASSERT_EQ(resident.size(), size_t(np));
    for (int r = 0; r < np; ++r) {
      // The rank's block of experts: contiguous, the first (experts mod np) ranks one more.
      const int64_t q = experts / np, extra = experts % np;
      const int64_t begin = r * q + std::min<int64_t>(r, extra), end = begin + q + (r < extra);
      // Byte ranges in the file (the data section starts after the header).
      std::vector<std::pair<uint64_t, uint64_t>> must = {}, may = {{0, file.header().data_offset}};
      for (const SafetensorsEntry& e : file.entries()) {
        const std::pair<uint64_t, uint64_t> at = {file.header().data_offset + e.begin, file.header().data_offset + e.end};
        const size_t x = e.name.find(".mlp.experts.");
        if (x != std::string::npos) {
          const int64_t id = std::stoll(e.name.substr(x + 13));
          if (id >= begin && id < end) must.push_back(at), may.push_back(at);
          continue;
        }
        may.push_back(at);
        for (const char* replicated : {"layernorm", "q_a_proj", "kv_a_proj_with_mqa", "mlp.gate.", "model.norm"})
          if (e.name.find(replicated) != std::string::npos) must.push_back(at);
      }
      // Bytes of the `window`-aligned windows that hold any byte of `ranges`.
      auto covered = [](const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t window) {
        std::set<uint64_t> w;
        for (const auto& [a, z] : ranges)
          for (uint64_t i = a / window; a < z && i <= (z - 1) / window; ++i) w.insert(i);
        return uint64_t(w.size()) * window;
      };
      const uint64_t lower = covered(must, 4096), upper = std::min(file_bytes, covered(may, uint64_t(2) << 20));
      std::printf("np %d rank %d: resident %.1f MB, bounds [%.1f, %.1f] MB, %.0f%% of the file\n", np, r,
                  double(resident[size_t(r)]) / 1e6, double(lower) / 1e6, double(upper) / 1e6,
                  100.0 * double(resident[size_t(r)]) / double(file_bytes));
      EXPECT_GE(resident[size_t(r)], lower) << "np " << np << " rank " << r;
      EXPECT_LE(resident[size_t(r)], upper) << "np " << np << " rank " << r;
      if (np == 1) {
        EXPECT_GE(resident[0], covered(may, 4096) - 4096) << "one process reads every tensor";
      }
      // Rank 0's huge-page share is of what it mapped in after the warm-up: its share, not the file.
      if (r == 0 && !bj["huge_page_of_bytes"].is_null()) {
        EXPECT_GT(bj["huge_page_of_bytes"].get<uint64_t>(), 0u) << "np " << np;
        EXPECT_LE(bj["huge_page_of_bytes"].get<uint64_t>(), upper) << "np " << np;
      }
    }
  }
}

int count_lines_with(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(MpiFaults, MoreRanksThanHeadsIsOneClearErrorBeforeLoading) {
  const auto r = run_command(mpirun(5) + kDsv3 + " generate -t 1" + kF32Cache + " --model " + golden("tiny-v3") + " --prompt-ids 0,1");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(count_lines_with(r.err, "dsv3: error: cannot split this model over 5 ranks: it has only 4 attention heads"), 1)
      << r.err;
}

// A copy of the checkpoint that only rank 1 reads is truncated (two machines, two copies).
TEST(MpiFaults, DamagedShardReadByOneRankIsOneClearError) {
  const fs::path bad = fs::temp_directory_path() / "damaged";
  fs::create_directories(bad);
  for (const char* f : {"config.json", "model.safetensors"})
    fs::copy_file(golden("tiny-v3") + "/" + f, bad / f, fs::copy_options::overwrite_existing);
  fs::resize_file(bad / "model.safetensors", 100000);
  const std::string run = kDsv3 + " generate -t 1 --prompt-ids 0,1 -n 2 --model ";
  const auto r = run_command(std::string(DSV3_MPIRUN) + " -np 1 " + run + golden("tiny-v3") + " : -np 1 " + run +
                             bad.string());
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(count_lines_with(r.err, "dsv3: error: rank 1 of 2"), 1) << r.err;
  EXPECT_NE(r.err.find("file truncated?"), std::string::npos) << r.err;
}

// SIGKILL of rank 1 during a long generation: mpirun exits non-zero within 10 s, naming rank 1.
// The generation (4000 tokens of the trained model: 3.5 s on an idle Zen 5 core, the tiny golden
// model's took under 1 s and could end before the kill) is killed 0.5 s after rank 1 appears.
TEST(MpiFaults, KillingAFollowerMidGenerationEndsTheJob) {
  const fs::path dir = fs::temp_directory_path();
  const std::string kjv = (fs::path(DSV3_TESTDATA_DIR).parent_path() / "models" / "dsv3-kjv").string();
  const std::string script =
      "(" + mpirun(2) + kDsv3 + " generate -t 1" + kF32Cache + " --model " + kjv +
      " --prompt-ids 0,1,2 -n 4000 --ignore-eos >/dev/null 2>" + (dir / "err").string() + "; echo $? >" +
      (dir / "rc").string() + ") & "
      "for i in $(seq 100); do sleep 0.1; m=$(pgrep -f '^" + std::string(DSV3_MPIRUN).substr(0, 40) + ".*-n 4000' | head -1); "
      "[ -n \"$m\" ] && r1=$(for c in $(pgrep -P $m); do grep -qz OMPI_COMM_WORLD_RANK=1 /proc/$c/environ && echo $c; done) "
      "&& [ -n \"$r1\" ] && break; done; sleep 0.5; "
      "kill -9 $r1; t0=$(date +%s%N); while [ ! -s " + (dir / "rc").string() + " ]; do sleep 0.1; "
      "[ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 30000 ] && break; done; "
      "echo \"elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 )) rc=$(cat " + (dir / "rc").string() + ")\"";
  const auto r = run_command("bash -c '" + [&] {
    std::string q;
    for (char c : script) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q;
  }() + "'");
  std::ifstream f(dir / "err");
  const std::string err((std::istreambuf_iterator<char>(f)), {});
  const size_t at = r.out.find("elapsed_ms=");
  ASSERT_NE(at, std::string::npos) << r.out << r.err;
  const long ms = std::stol(r.out.substr(at + 11));
  const int rc = std::stoi(r.out.substr(r.out.find("rc=") + 3));
  EXPECT_LT(ms, 10000) << r.out;
  EXPECT_NE(rc, 0) << r.out;
  EXPECT_NE(err.find("rank 1"), std::string::npos) << err;
  EXPECT_NE(err.find("signal 9"), std::string::npos) << err;
}

// `serve` under mpirun -np 2 (rank 0 serves HTTP, rank 1 follows): a completion is answered; then
// either SIGTERM to rank 0 stops every rank cleanly (exit 0), or SIGKILL of rank 1 ends the job
// non-zero within 10 s.
std::string serve_script(const std::string& model, int port, const std::string& signal, int rank) {
  const fs::path dir = fs::temp_directory_path();
  const std::string out = (dir / ("serve" + std::to_string(port))).string();
  return "{ (" + mpirun(2) + std::string(DSV3_BINARY) + " serve -t 1 --model " + model + " --port " +
         std::to_string(port) + " >" + out + " 2>&1; echo rc=$? >>" + out + ") & "
         "for i in $(seq 300); do grep -q listening " + out + " 2>/dev/null && break; sleep 0.2; done; "
         "m=$(pgrep -f \"^" + std::string(DSV3_MPIRUN).substr(0, 30) + ".*--port " + std::to_string(port) + "\" | head -1); "
         "r=$(for c in $(pgrep -P $m); do grep -qz OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + " /proc/$c/environ && echo $c; done); "
         "curl -s -m 60 http://127.0.0.1:" + std::to_string(port) + "/v1/completions -H 'Content-Type: application/json' "
         "-d '{\"prompt\":\"Hello\",\"max_tokens\":4,\"temperature\":0}'; echo; "
         "kill -" + signal + " $r; t0=$(date +%s%N); "
         "while ! grep -q rc= " + out + "; do sleep 0.1; [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 30000 ] && break; done; "
         "echo \"elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))\"; cat " + out + "; }";
}

TEST(MpiServe, AnswersOverHttpAndStopsCleanlyOnSigtermToRankZero) {
  const std::string model = (fs::temp_directory_path() / "serve_model").string();
  ASSERT_EQ(run_command(std::string(DSV3_BINARY) + " synth --preset tiny --out " + model + " --tokenizer " +
                        DSV3_TOKENIZER_DIR).code, 0);
  const auto a = run_command(serve_script(model, 18911, "TERM", 0));
  EXPECT_NE(a.out.find("\"finish_reason\""), std::string::npos) << a.out << a.err;
  EXPECT_NE(a.out.find("dsv3 serve: stopped"), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("rc=0"), std::string::npos) << a.out;
  const auto k = run_command(serve_script(model, 18912, "9", 1));
  EXPECT_NE(k.out.find("\"finish_reason\""), std::string::npos) << k.out << k.err;
  const size_t at = k.out.find("elapsed_ms=");
  ASSERT_NE(at, std::string::npos) << k.out;
  EXPECT_LT(std::stol(k.out.substr(at + 11)), 10000) << k.out;
  EXPECT_EQ(k.out.find("rc=0"), std::string::npos) << k.out;
  EXPECT_NE(k.out.find("rank 1"), std::string::npos) << k.out;
}

}  // namespace
}  // namespace dsv3
