// End-to-end tests of the dsv3 binary on a synthetic checkpoint that carries DeepSeek-V3's real
// tokenizer: text generation, batch files, the scripting commands, chat, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>

#include "tests/cli/run_command.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using test::run_command;

const std::string kBin = DSV3_BINARY;

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("dsv3_cli_test_" + std::to_string(::getpid())));
    const auto r = run_command(kBin + " synth --preset tiny --seed 1 --force --out " + dir_->string() +
                               " --tokenizer " + DSV3_TOKENIZER_DIR);
    ASSERT_EQ(r.code, 0) << r.err << "\n(the tokenizer files come from scripts/setup)";
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string model() { return " --model " + dir_->string(); }
  static fs::path* dir_;
};
fs::path* Cli::dir_ = nullptr;

TEST_F(Cli, GenerateFromTextIsReproducibleBySeed) {
  const std::string cmd = kBin + " generate" + model() + " --prompt 'Hello there' -n 12 --temperature 0.9 --seed 5 -t 1";
  const auto a = run_command(cmd), b = run_command(cmd);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_FALSE(a.out.empty());
  EXPECT_EQ(a.out, b.out);
  const auto c = run_command(kBin + " generate" + model() + " --prompt 'Hello there' -n 12 --temperature 0.9 --seed 6");
  EXPECT_NE(a.out, c.out);
}

TEST_F(Cli, GreedyTextEqualsGreedyIds) {
  // The same prompt through --prompt (template + tokenizer) and through the ids the template gives.
  const auto t = run_command(kBin + " chat-template" + model() + " --jsonl",
                             R"({"messages":[{"role":"user","content":"Count to three"}],"add_generation_prompt":true})"
                             "\n");
  ASSERT_EQ(t.code, 0) << t.err;
  const auto ids = nlohmann::json::parse(t.out)["ids"];
  std::string id_list;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) id_list += ',';
    id_list += std::to_string(ids[i].get<int>());
  }
  const auto by_ids = run_command(kBin + " generate" + model() + " --prompt-ids " + id_list + " -n 8 --ignore-eos");
  const auto by_text =
      run_command(kBin + " generate" + model() + " --prompt 'Count to three' -n 8 --ignore-eos --print-ids");
  ASSERT_EQ(by_ids.code, 0) << by_ids.err;
  ASSERT_EQ(by_text.code, 0) << by_text.err;
  EXPECT_NE(by_text.out.find("ids: " + by_ids.out.substr(0, by_ids.out.size() - 1)), std::string::npos)
      << by_text.out << " vs " << by_ids.out;
}

TEST_F(Cli, InputFileAnswersEveryPromptInOrder) {
  const fs::path f = fs::temp_directory_path() / ("dsv3_prompts_" + std::to_string(::getpid()));
  {
    std::ofstream o(f);
    for (int i = 1; i <= 8; ++i) o << "Prompt number " << i << "\n";
  }
  const auto r = run_command(kBin + " generate" + model() + " --input-file " + f.string() + " -n 4");
  fs::remove(f);
  ASSERT_EQ(r.code, 0) << r.err;
  size_t pos = 0;
  for (int i = 1; i <= 8; ++i) {
    pos = r.out.find("Prompt: Prompt number " + std::to_string(i), pos);
    ASSERT_NE(pos, std::string::npos) << "answer " << i << " missing or out of order:\n" << r.out;
  }
}

TEST_F(Cli, TokenizeDetokenizeRoundTrip) {
  const auto t = run_command(kBin + " tokenize" + model() + " --jsonl",
                             "{\"text\": \"Hello, world! 你好\"}\n{\"text\": \"x\", \"add_special\": true}\n");
  ASSERT_EQ(t.code, 0) << t.err;
  const auto lines = t.out.substr(0, t.out.find('\n'));
  const auto ids = nlohmann::json::parse(lines)["ids"];
  const auto d = run_command(kBin + " detokenize" + model() + " --jsonl", nlohmann::json{{"ids", ids}}.dump() + "\n");
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(nlohmann::json::parse(d.out)["text"], "Hello, world! 你好");
  EXPECT_EQ(nlohmann::json::parse(t.out.substr(t.out.find('\n') + 1))["ids"][0], 0);  // BOS
}

TEST_F(Cli, ChatKeepsHistoryClearsAndExits) {
  const auto r = run_command(kBin + " chat" + model() + " -n 6 --verbose", "Hi\nAnd then?\n/clear\nHello\n/exit\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("(conversation cleared)"), std::string::npos);
  // Second turn reuses the cache: it prefills only the new part of the conversation, so the
  // reported context grows across turns and restarts after /clear.
  EXPECT_EQ(test::count_lines(r.err.substr(r.err.find('['))), 4) << r.err;
}

TEST_F(Cli, BadInputGivesOneClearLine) {
  auto expect_error = [](const std::string& cmd, const std::string& needle) {
    const auto r = run_command(cmd);
    EXPECT_NE(r.code, 0) << cmd;
    EXPECT_EQ(test::count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
  };
  expect_error(kBin + " generate" + model() + " --input-file /nonexistent/prompts.txt", "/nonexistent/prompts.txt");
  expect_error(kBin + " generate" + model() + " --prompt 'a long prompt that will not fit' --ctx-size 4 -n 1",
               "exceed the context size of 4");
  expect_error(kBin + " generate" + model() + " --prompt-ids 0,1 --prompt x", "exactly one of");
  expect_error(kBin + " generate --model /nonexistent --prompt hi", "/nonexistent");
  expect_error(kBin + " generate" + model() + " --prompt-ids 0,abc", "'abc' is not a token id");
  expect_error(kBin + " generate --model " + std::string(DSV3_TESTDATA_DIR) + "/golden/tiny-v3 --prompt hi",
               "no tokenizer.json");
}

TEST_F(Cli, TokenizerBeyondTheModelsVocabularyRefusesToStart) {
  // The golden tiny model (vocabulary 1024) with DeepSeek-V3's tokenizer (ids up to 128814).
  const fs::path dir = fs::temp_directory_path() / ("dsv3_cli_vocab_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path tiny = fs::path(DSV3_TESTDATA_DIR) / "golden" / "tiny-v3";
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(tiny / f, dir / f);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(fs::path(DSV3_TOKENIZER_DIR) / f, dir / f);
  for (const std::string cmd : {" generate --prompt hi", " chat", " serve --port 0"}) {
    const auto r = run_command("echo hi | " + kBin + cmd + " --model " + dir.string());
    EXPECT_NE(r.code, 0) << cmd;
    EXPECT_EQ(test::count_lines(r.err), 1) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find("token ids up to 128814, beyond the model's vocabulary of 1024"), std::string::npos)
        << cmd << ": " << r.err;
  }
  fs::remove_all(dir);
}

TEST_F(Cli, InvalidUtf8PromptIsReplacedNotFatal) {
  const auto r = run_command(kBin + " generate" + model() + " --raw --prompt $'caf\\xe9 \\xff' -n 2");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(Cli, BenchReportsEveryFigureAndSpeculationMatchesPlainGreedy) {
  // bench itself checks that speculative output equals plain greedy output (it fails if not).
  const auto r = run_command(kBin + " bench" + model() + " --json --prompt-len 8 --gen 6 --batch 2 --speculative mtp:2");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"bandwidth_gb_s", "prefill_tokens_per_s", "decode_tokens_per_s", "batch_decode_tokens_per_s",
                        "bytes_per_token", "decode_bandwidth_share", "time_to_first_token_s", "peak_rss_bytes",
                        "spec_acceptance_rate", "spec_tokens_per_step", "spec_decode_tokens_per_s", "prefill_gflop_per_s"})
    EXPECT_TRUE(j.contains(k)) << k;
#if defined(__x86_64__)
  ASSERT_TRUE(j.contains("fma_peak_gflop_per_s"));
  EXPECT_GT(j["fma_peak_gflop_per_s"].get<double>(), 0);
  EXPECT_GT(j["prefill_fma_peak_share"].get<double>(), 0);
#endif
  EXPECT_GT(j["decode_tokens_per_s"].get<double>(), 0);
  EXPECT_GE(j["spec_tokens_per_step"].get<double>(), 1.0);
  // The cost of a drafted step against a plain one, and the speedup it allows (issue 20).
  EXPECT_GT(j["spec_step_cost"].get<double>(), 0);
  EXPECT_NEAR(j["spec_speedup_bound"].get<double>(),
              j["spec_tokens_per_step"].get<double>() / j["spec_step_cost"].get<double>(), 1e-9);
  EXPECT_GT(j["spec_draft_share_of_step"].get<double>(), 0);
  EXPECT_LT(j["spec_draft_share_of_step"].get<double>(), 1);
  EXPECT_GT(j["spec_drafted_step_share"].get<double>(), 0);
  EXPECT_LE(j["spec_drafted_step_share"].get<double>(), 1);
  // The bandwidth the decode is compared with: the mean of a measurement just before and one
  // just after it, both reported, with how far they moved apart.
  const double before = j["bandwidth_before_decode_gb_s"].get<double>(), after = j["bandwidth_after_decode_gb_s"].get<double>();
  EXPECT_GT(before, 0);
  EXPECT_GT(after, 0);
  EXPECT_NEAR(j["bandwidth_gb_s"].get<double>(), (before + after) / 2, 1e-9 * (before + after));
  EXPECT_NEAR(j["bandwidth_change_during_decode"].get<double>(), std::max(before, after) / std::min(before, after) - 1, 1e-9);
  // Resident memory is the model run's (a few MB for this model), not the bandwidth probe's
  // 1 GiB buffer, which the process's getrusage peak would include.
  EXPECT_GT(j["peak_rss_bytes"].get<double>(), 0);
  EXPECT_LT(j["peak_rss_bytes"].get<double>(), 512.0 * 1024 * 1024);
  // The share of the weights in huge pages, measured (Linux: from /proc/self/smaps).
  ASSERT_TRUE(j.contains("huge_page_share"));
#if defined(__linux__)
  EXPECT_GE(j["huge_page_share"].get<double>(), 0.0);
  EXPECT_LE(j["huge_page_share"].get<double>(), 1.0);
  // Of the weights' bytes this process mapped in (after bench's warm-up: the whole file here).
  EXPECT_NEAR(j["huge_page_bytes"].get<double>(), j["huge_page_share"].get<double>() * j["huge_page_of_bytes"].get<double>(), 1.0);
  EXPECT_GT(j["huge_page_of_bytes"].get<double>(), 0.5 * j["weights_file_bytes"].get<double>());
  EXPECT_LE(j["huge_page_of_bytes"].get<double>(), j["weights_file_bytes"].get<double>());
#endif
  // The batched step's bytes: the experts its 2 tokens chose, each once, so between one token's
  // and two tokens' bytes; the speedup a memory-bound step allows follows from them.
  const double wpt = j["weight_bytes_per_token"].get<double>(), step = j["batch_weight_bytes_per_step"].get<double>();
  EXPECT_GE(step, wpt);
  EXPECT_LE(step, 2 * wpt);
  EXPECT_GT(j["batch_bytes_per_step"].get<double>(), step);  // + the two sequences' caches
  EXPECT_NEAR(j["batch_speedup_bound"].get<double>(), 2 * j["bytes_per_token"].get<double>() / j["batch_bytes_per_step"].get<double>(), 1e-9);
  EXPECT_GT(j["batch_bandwidth_share"].get<double>(), 0);
  // The roofline: FLOPs per byte grow from decode to the batch to prefill; each phase's share
  // of its bound, which for memory-bound decode is its share of the bandwidth.
  EXPECT_LT(j["decode_flop_per_byte"].get<double>(), j["batch_flop_per_byte"].get<double>());
  EXPECT_LT(j["decode_flop_per_byte"].get<double>(), j["prefill_flop_per_byte"].get<double>());
#if defined(__x86_64__)
  const double ridge = j["ridge_flop_per_byte"].get<double>();
  EXPECT_NEAR(ridge, j["fma_peak_gflop_per_s"].get<double>() / j["bandwidth_gb_s"].get<double>(), 1e-9 * ridge);
  for (const char* k : {"decode_roofline_share", "batch_roofline_share", "prefill_roofline_share"})
    EXPECT_GT(j[k].get<double>(), 0) << k;
  if (j["decode_flop_per_byte"].get<double>() < ridge) {
    EXPECT_NEAR(j["decode_roofline_share"].get<double>(), j["decode_bandwidth_share"].get<double>(), 1e-9);
  }
  // scripts/plot-roofline draws it (a PNG), and names what is wrong with a JSON it cannot use.
  const std::string dir = ::testing::TempDir(), json = dir + "/bench_roofline.json", png = dir + "/roofline.png";
  {
    std::ofstream(json) << r.out;
  }
  const std::string plot = std::string(DSV3_SOURCE_DIR) + "/scripts/plot-roofline";
  const auto drawn = run_command(plot + " " + png + " 'tiny, 2 threads=" + json + "'");
  ASSERT_EQ(drawn.code, 0) << drawn.err;
  std::ifstream f(png, std::ios::binary);
  char sig[8] = {};
  f.read(sig, 8);
  EXPECT_EQ(std::string(sig, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  {
    std::ofstream(json) << "{\"decode_tokens_per_s\": 1}";
  }
  const auto bad_json = run_command(plot + " " + png + " x=" + json);
  EXPECT_NE(bad_json.code, 0);
  EXPECT_NE(bad_json.err.find("fma_peak_gflop_per_s"), std::string::npos) << bad_json.err;
#endif
  // --no-mmap reads the weights into huge-page-backed memory: same greedy tokens.
  const auto ids = run_command(kBin + " generate" + model() + " --prompt-ids 0,5,7 -n 6 --ignore-eos");
  const auto ids_read = run_command(kBin + " generate" + model() + " --prompt-ids 0,5,7 -n 6 --ignore-eos --no-mmap");
  ASSERT_EQ(ids_read.code, 0) << ids_read.err;
  EXPECT_EQ(ids.out, ids_read.out);
  const auto bad = run_command(kBin + " bench --model " + std::string(DSV3_TESTDATA_DIR) + "/golden/tiny-v3 --gen 2");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("MTP module"), std::string::npos) << bad.err;
}

// --repetitions: every measured figure is the median of the runs, each run listed; the
// model-derived figures are reported once.
TEST_F(Cli, BenchRepetitionsReportMediansAndEveryRun) {
  const auto r = run_command(kBin + " bench" + model() + " --json -p 4 -n 3 --batch 2 --speculative off -r 3");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["repetitions"], 3);
  for (const char* k : {"bandwidth_gb_s", "prefill_tokens_per_s", "decode_tokens_per_s", "batch_decode_tokens_per_s",
                        "decode_bandwidth_share", "time_to_first_token_s"}) {
    const auto& runs = j[std::string(k) + "_runs"];
    ASSERT_EQ(runs.size(), 3u) << k;
    std::vector<double> v;
    for (const auto& x : runs) v.push_back(x.get<double>());
    std::sort(v.begin(), v.end());
    EXPECT_EQ(j[k].get<double>(), v[1]) << k;  // the median of three
  }
  EXPECT_FALSE(j.contains("bytes_per_token_runs"));
  EXPECT_FALSE(j.contains("spec_decode_tokens_per_s"));
  const auto text = run_command(kBin + " bench" + model() + " -p 4 -n 3 --batch 1 --speculative off -r 2");
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("repetitions      2"), std::string::npos) << text.out;
  const auto bad = run_command(kBin + " bench" + model() + " -r 0");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("repetitions"), std::string::npos) << bad.err;
  // --batch sweeps several sizes: each measured once, ascending (1 is the plain decode), one
  // object per size with its runs; the largest is also the top-level batch_* figures.
  const auto sweep = run_command(kBin + " bench" + model() + " --json -p 4 -n 3 --batch 3,2,1,2 --speculative off -r 2");
  ASSERT_EQ(sweep.code, 0) << sweep.err;
  const auto s = nlohmann::json::parse(sweep.out);
  ASSERT_EQ(s["batches"].size(), 2u);
  EXPECT_EQ(s["batches"][0]["batch"], 2);
  EXPECT_EQ(s["batches"][1]["batch"], 3);
  for (const auto& b : s["batches"])
    for (const char* k : {"decode_tokens_per_s", "speedup_vs_single", "bytes_per_step", "bandwidth_share", "speedup_bound",
                          "gflop_per_s", "flop_per_byte"}) {
      ASSERT_TRUE(b.contains(k)) << k;
      EXPECT_EQ(b[std::string(k) + "_runs"].size(), 2u) << k;
    }
  EXPECT_EQ(s["batch"], 3);
  EXPECT_EQ(s["batch_decode_tokens_per_s"], s["batches"][1]["decode_tokens_per_s"]);
  EXPECT_EQ(s["batch_bytes_per_step"], s["batches"][1]["bytes_per_step"]);
  // Three tokens choose at least as many experts as two, on the same sequences' first two.
  EXPECT_GE(s["batches"][1]["weight_bytes_per_step"].get<double>(), s["batches"][0]["weight_bytes_per_step"].get<double>());
  const auto none = run_command(kBin + " bench" + model() + " --json -p 4 -n 2 --batch 1 --speculative off");
  ASSERT_EQ(none.code, 0) << none.err;
  const auto n1 = nlohmann::json::parse(none.out);
  EXPECT_TRUE(n1["batches"].is_array() && n1["batches"].empty());
  EXPECT_FALSE(n1.contains("batch_decode_tokens_per_s"));
  for (const char* bad_batch : {"0", "2,x", "2,2000"}) {
    const auto b = run_command(kBin + " bench" + model() + " --batch " + bad_batch);
    EXPECT_NE(b.code, 0) << bad_batch;
    EXPECT_NE(b.err.find("--batch"), std::string::npos) << b.err;
  }
  // A prompt longer than the model's context is refused before anything runs.
  const auto too_long = run_command(kBin + " bench" + model() + " -p 1048576 -n 4 --speculative off");
  EXPECT_NE(too_long.code, 0);
  EXPECT_NE(too_long.err.find("exceeds the model's context"), std::string::npos) << too_long.err;
}

// bench's per-layer report: one entry per main layer, of its config's kind, with its prefill and
// decode times and the bytes it reads per decoded token; the layers, the embedding and lm_head
// lie inside the step; each kind's mean; and --project to a config of the same layer shapes.
TEST_F(Cli, BenchReportsEachLayersTimes) {
  const std::string config = (*dir_ / "config.json").string();
  const auto c = nlohmann::json::parse(std::ifstream(config));
  const int64_t layers = c["num_hidden_layers"].get<int64_t>(), dense = c["first_k_dense_replace"].get<int64_t>();
  ASSERT_GT(dense, 0);
  ASSERT_LT(dense, layers);
  // A config with twice the MoE layers, to project to.
  auto deeper = c;
  deeper["num_hidden_layers"] = layers + (layers - dense);
  const std::string deeper_path = ::testing::TempDir() + "/bench_project_config.json";
  std::ofstream(deeper_path) << deeper.dump();
  const auto r = run_command(kBin + " bench" + model() + " --json -p 6 -n 4 --batch 1 --speculative mtp:1 -r 2 --project " +
                             deeper_path);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(int64_t(j["layers"].size()), layers);
  double prefill = 0, decode = 0, weight = 0;
  for (int64_t l = 0; l < layers; ++l) {
    const auto& e = j["layers"][size_t(l)];
    EXPECT_EQ(e["index"], l);
    EXPECT_EQ(e["kind"], l < dense ? "dense" : "moe") << l;
    for (const char* k : {"prefill_ms_per_token", "decode_ms_per_token", "weight_bytes_per_token",
                          "cache_bytes_per_token", "decode_gb_s", "decode_bandwidth_share",
                          "prefill_attention_ms_per_token", "prefill_ffn_ms_per_token", "decode_attention_ms_per_token",
                          "decode_ffn_ms_per_token", "attention_weight_bytes_per_token", "ffn_weight_bytes_per_token",
                          "decode_attention_gb_s", "decode_ffn_gb_s"})
      EXPECT_GT(e[k].get<double>(), 0) << l << " " << k;
    // Its halves: attention and FFN.
    EXPECT_NEAR(e["attention_weight_bytes_per_token"].get<double>() + e["ffn_weight_bytes_per_token"].get<double>(),
                e["weight_bytes_per_token"].get<double>(), 1e-9 * e["weight_bytes_per_token"].get<double>());
    EXPECT_NEAR(e["decode_attention_ms_per_token"].get<double>() + e["decode_ffn_ms_per_token"].get<double>(),
                e["decode_ms_per_token"].get<double>(), 1e-9 * e["decode_ms_per_token"].get<double>());
    EXPECT_EQ(e["decode_ms_per_token_runs"].size(), 2u);  // every run's value, as the other figures
    prefill += e["prefill_ms_per_token"].get<double>();
    decode += e["decode_ms_per_token"].get<double>();
    weight += e["weight_bytes_per_token"].get<double>();
  }
  // The layers' weights, lm_head's and an embedding row are what a decoded token reads.
  const double all = j["weight_bytes_per_token"].get<double>();
  EXPECT_NEAR(weight + j["head_weight_bytes_per_token"].get<double>() + j["embed_weight_bytes_per_token"].get<double>(),
              all, 1e-9 * all);
  for (const char* k : {"prefill_embed_ms_per_token", "prefill_head_ms_per_token", "decode_embed_ms_per_token",
                        "decode_head_ms_per_token", "spec_mtp_ms_per_token"})
    EXPECT_GT(j[k].get<double>(), 0) << k;
  // Each kind's mean over its layers.
  ASSERT_EQ(j["layer_kinds"].size(), 2u);
  EXPECT_EQ(j["layer_kinds"][0]["kind"], "dense");
  EXPECT_EQ(j["layer_kinds"][0]["layers"], dense);
  EXPECT_EQ(j["layer_kinds"][1]["kind"], "moe");
  EXPECT_EQ(j["layer_kinds"][1]["layers"], layers - dense);
  double kinds_decode = 0, kinds_prefill = 0;
  for (const auto& k : j["layer_kinds"]) {
    kinds_decode += k["layers"].get<double>() * k["decode_ms_per_token"].get<double>();
    kinds_prefill += k["layers"].get<double>() * k["prefill_ms_per_token"].get<double>();
  }
  EXPECT_NEAR(kinds_decode, decode, 1e-9 * decode);
  EXPECT_NEAR(kinds_prefill, prefill, 1e-9 * prefill);
  // Projected to twice the MoE layers: their time and bytes twice over.
  const auto& moe = j["layer_kinds"][1];
  const auto& p = j["projection"];
  EXPECT_EQ(p["num_hidden_layers"], layers + (layers - dense));
  EXPECT_EQ(p["dense_layers"], dense);
  EXPECT_EQ(p["moe_layers"], 2 * (layers - dense));
  const double extra = double(layers - dense);
  EXPECT_NEAR(p["decode_ms_per_token"].get<double>(),
              j["decode_step_ms_per_token"].get<double>() + extra * moe["decode_ms_per_token"].get<double>(),
              1e-9 * p["decode_ms_per_token"].get<double>());
  EXPECT_NEAR(p["prefill_ms_per_token"].get<double>(),
              j["prefill_step_ms_per_token"].get<double>() + extra * moe["prefill_ms_per_token"].get<double>(),
              1e-9 * p["prefill_ms_per_token"].get<double>());
  EXPECT_NEAR(p["weight_bytes_per_token"].get<double>(), all + extra * moe["weight_bytes_per_token"].get<double>(),
              1e-9 * all);

  // One run: the parts lie inside the step (a median of sums is not the sum of the medians, so
  // not with -r 2), the prefill step inside the prefill that bench timed around it; projected
  // onto its own config, the model is what was measured.
  const auto one = run_command(kBin + " bench" + model() + " --json -p 6 -n 4 --batch 1 --speculative off --project " + config);
  ASSERT_EQ(one.code, 0) << one.err;
  const auto o = nlohmann::json::parse(one.out);
  double pre1 = o["prefill_embed_ms_per_token"].get<double>() + o["prefill_head_ms_per_token"].get<double>();
  double dec1 = o["decode_embed_ms_per_token"].get<double>() + o["decode_head_ms_per_token"].get<double>();
  for (const auto& e : o["layers"]) pre1 += e["prefill_ms_per_token"].get<double>(), dec1 += e["decode_ms_per_token"].get<double>();
  EXPECT_LE(pre1, o["prefill_step_ms_per_token"].get<double>() * (1 + 1e-12));
  EXPECT_LE(dec1, o["decode_step_ms_per_token"].get<double>() * (1 + 1e-12));
  EXPECT_LE(o["prefill_step_ms_per_token"].get<double>(), 1e3 / o["prefill_tokens_per_s"].get<double>());
  EXPECT_FALSE(o.contains("spec_mtp_ms_per_token"));
  const auto& own = o["projection"];
  EXPECT_EQ(own["num_hidden_layers"], layers);
  EXPECT_NEAR(own["decode_ms_per_token"].get<double>(), o["decode_step_ms_per_token"].get<double>(),
              1e-9 * o["decode_step_ms_per_token"].get<double>());
  EXPECT_NEAR(own["prefill_ms_per_token"].get<double>(), o["prefill_step_ms_per_token"].get<double>(),
              1e-9 * o["prefill_step_ms_per_token"].get<double>());
  EXPECT_NEAR(own["weight_bytes_per_token"].get<double>(), all, 1e-9 * all);
  EXPECT_NEAR(own["decode_bound_tokens_per_s_per_100gb_s"].get<double>(),
              100e9 / (all + o["cache_bytes_per_token"].get<double>()), 1e-6);

  // The text report lists them.
  const auto text = run_command(kBin + " bench" + model() + " -p 4 -n 2 --batch 1 --speculative off --project " + config);
  ASSERT_EQ(text.code, 0) << text.err;
  for (const char* line : {"  0 dense", "moe mean of 2", "    attention", "    moe ffn", "    mlp", "norm + lm_head",
                           "whole step", "projection       "})
    EXPECT_NE(text.out.find(line), std::string::npos) << line << "\n" << text.out;
  // A config of other shapes is refused before anything is measured.
  const auto bad = run_command(kBin + " bench" + model() + " --speculative off --project " +
                               std::string(DSV3_TESTDATA_DIR) + "/configs/deepseek-v3-671b/config.json");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("shapes differ"), std::string::npos) << bad.err;
}

// synth --config writes any config (here the golden tiny-v3's), cut with --layers and
// --mtp-layers; the result loads and generates.
TEST_F(Cli, SynthFromAConfigCutToLayers) {
  const std::string out = ::testing::TempDir() + "/synth_from_config";
  const auto r = run_command(kBin + " synth --config " + std::string(DSV3_TESTDATA_DIR) +
                             "/golden/tiny-v3/config.json --layers 2 --mtp-layers 0 --force --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(std::ifstream(out + "/config.json"));
  EXPECT_EQ(j["num_hidden_layers"], 2);
  EXPECT_EQ(j["first_k_dense_replace"], 1);
  EXPECT_EQ(j["num_nextn_predict_layers"], 0);
  const auto g = run_command(kBin + " generate --model " + out + " --prompt-ids 0,5,7 -n 4 --ignore-eos");
  EXPECT_EQ(g.code, 0) << g.err;
  const auto both = run_command(kBin + " synth --preset tiny --config " + out + "/config.json --out " + out + "2");
  EXPECT_NE(both.code, 0);
  fs::remove_all(out);
}

TEST_F(Cli, InspectOnTheFull671BConfig) {
  const auto r =
      run_command(kBin + " inspect --json --model " + std::string(DSV3_TESTDATA_DIR) + "/configs/deepseek-v3-671b");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["kv_bytes_per_token"], 70272);  // 61 layers x (512 + 64) x 2 bytes
  EXPECT_NEAR(j["total_params"].get<double>() / 1e9, 671.0, 0.5);
  EXPECT_NEAR(j["active_params"].get<double>() / 1e9, 37.5, 1.0);
  EXPECT_EQ(j["mtp_present"], false);
}

// Every conformance case of testdata/templates through `chat-template --jsonl`, one process per
// template, with the thinking switch given as the server takes it (chat_template_kwargs).
TEST(ChatTemplateCommand, RendersEveryConformanceCase) {
  const fs::path dir = fs::path(DSV3_TESTDATA_DIR) / "templates";
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> by_template;  // stdin, expected
  for (const char* file : {"cases.jsonl", "cases-0324.jsonl"}) {
    std::ifstream in(dir / file);
    ASSERT_TRUE(in) << file;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      auto c = nlohmann::ordered_json::parse(line);
      auto& [input, expected] = by_template[c["template"].get<std::string>()];
      expected.push_back(c["rendered"].get<std::string>());
      nlohmann::ordered_json req = {{"messages", c["messages"]}, {"add_generation_prompt", c["add_generation_prompt"]}};
      if (c.contains("thinking")) req["chat_template_kwargs"] = {{"thinking", c["thinking"]}};
      input += req.dump() + "\n";
    }
  }
  ASSERT_EQ(by_template.size(), 3u);
  for (const auto& [name, io] : by_template) {
    SCOPED_TRACE(name);
    std::string cmd = kBin + " chat-template --jsonl --model " + DSV3_TOKENIZER_DIR;
    if (name != "deepseek-v3") cmd += " --chat-template-file " + (dir / (name + ".jinja")).string();
    const auto r = run_command(cmd, io.first);
    ASSERT_EQ(r.code, 0) << r.err;
    std::istringstream out(r.out);
    size_t i = 0;
    for (std::string line; std::getline(out, line); ++i) {
      ASSERT_LT(i, io.second.size());
      EXPECT_EQ(nlohmann::json::parse(line)["text"].get<std::string>(), io.second[i]) << "case " << i;
    }
    EXPECT_EQ(i, io.second.size());
  }
  // DeepSeek's API spelling of the switch, and a bad one named in the error.
  const std::string v31 = " --chat-template-file " + (dir / "deepseek-v3.1.jinja").string();
  const auto on = run_command(kBin + " chat-template --jsonl --model " + DSV3_TOKENIZER_DIR + v31,
                              R"({"messages":[{"role":"user","content":"Hi"}],"add_generation_prompt":true,)"
                              R"("thinking":{"type":"enabled"}})"
                              "\n");
  ASSERT_EQ(on.code, 0) << on.err;
  EXPECT_NE(on.out.find(R"(<｜Assistant｜><think>")"), std::string::npos) << on.out;
  const auto bad = run_command(kBin + " chat-template --jsonl --model " + DSV3_TOKENIZER_DIR + v31,
                               R"({"messages":[],"chat_template_kwargs":[1]})"
                               "\n");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("chat_template_kwargs"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace dsv3
