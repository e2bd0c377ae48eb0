// Structured output's cost per decode step, on DeepSeek-V3's real vocabulary (129,280 ids).
//   build/bench/engine/dsv3_structured_bench
//     MaskFromScratch/<state>: one trie walk (the cost of a cache miss after a rejected draw)
//     CheckToken: the one check of a sampled token (most steps)
//     ReplayDocument: constrained greedy sampling along a tokenized JSON answer, per token
//   DSV3_BENCH_MODEL=<dir> (e.g. `dsv3 synth --preset small --tokenizer third_party/npm/deepseek_v3`):
//     DecodeStep: one decode step of that model (the baseline), and
//     ConstrainedDecode: decode steps under a schema with the constraint's time reported
//     separately (counter constraint_share = constraint time / forward time).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <random>

#include "engine/sequence.h"
#include "engine/token_mask.h"
#include "model/transformer.h"

namespace dsv3 {
namespace {

using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

const char* kSchema = R"({"type":"object","properties":{
  "name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
  "email":{"type":"string","maxLength":64},"tags":{"type":"array","items":{"type":"string"}},
  "address":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string"}},"required":["city"]},
  "score":{"type":"number"},"active":{"type":"boolean"}},
  "required":["name","age","tags","address","active"],"additionalProperties":false})";
const char* kDocument = R"({"name": "Ada Lovelace, Countess of Lovelace", "age": 36, "email": "ada@example.org",
  "tags": ["mathematician", "writer", "first programmer"], "address": {"city": "London", "zip": "W1"},
  "score": 99.5, "active": true})";

struct Vocab {
  Tokenizer tok = Tokenizer::from_dir(DSV3_TOKENIZER_DIR);
  std::shared_ptr<const VocabTrie> trie = std::make_shared<const VocabTrie>(tok, 129280);
  std::shared_ptr<const JsonGrammar> grammar =
      std::make_shared<const JsonGrammar>(compile_json_schema(ojson::parse(kSchema)));
  std::vector<int32_t> eos = {*tok.eos_id()};
};
const Vocab& vocab() {
  static const Vocab v;
  return v;
}

void VocabTrieBuild(benchmark::State& state) {
  const Tokenizer& tok = vocab().tok;
  for (auto _ : state) benchmark::DoNotOptimize(VocabTrie(tok, 129280));
  state.counters["nodes"] = double(vocab().trie->all().nodes.size());
  state.counters["not_plain_nodes"] = double(vocab().trie->not_plain().nodes.size());
}
BENCHMARK(VocabTrieBuild)->Unit(benchmark::kMillisecond)->Iterations(3);

// The automaton after `prefix` of the document.
void MaskFromScratch(benchmark::State& state, const char* prefix) {
  const Vocab& v = vocab();
  JsonAutomaton a(v.grammar);
  if (!a.advance(prefix)) state.SkipWithError("prefix not accepted");
  int64_t allowed = 0;
  for (auto _ : state) allowed = compute_token_mask(*v.trie, a, v.eos).count();
  state.counters["allowed"] = double(allowed);
}
BENCHMARK_CAPTURE(MaskFromScratch, start, "")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(MaskFromScratch, key, R"({"name": "Ada", )")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(MaskFromScratch, string, R"({"name": "Ada)")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(MaskFromScratch, bounded_string, R"({"name": "Ada", "age": 36, "email": "ada)")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(MaskFromScratch, integer, R"({"name": "Ada", "age": 3)")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(MaskFromScratch, after_value, R"({"name": "Ada", "age": 36)")->Unit(benchmark::kMillisecond);

void CheckToken(benchmark::State& state) {
  const Vocab& v = vocab();
  TokenConstraint c(v.trie, v.grammar, v.eos);
  for (int32_t t : v.tok.encode(R"({"name": "Ada)")) c.accept(t);
  const int32_t word = v.tok.encode(" Lovelace")[0];
  for (auto _ : state) benchmark::DoNotOptimize(c.allows(word));
}
BENCHMARK(CheckToken);

// Greedy constrained sampling along the document's tokens (logits peaked at the next token, so
// each step is the sampler's argmax plus one check), per token.
void ReplayDocument(benchmark::State& state) {
  const Vocab& v = vocab();
  const std::vector<int32_t> doc = v.tok.encode(kDocument);
  std::vector<float> logits(129280, 0.0f);
  Sampler sampler(SamplingParams{});
  for (auto _ : state) {
    TokenConstraint c(v.trie, v.grammar, v.eos);
    for (int32_t t : doc) {
      logits[size_t(t)] = 1.0f;
      const int32_t s = sample_constrained(sampler, logits, c);
      logits[size_t(t)] = 0.0f;
      c.accept(s);
    }
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(doc.size()));
}
BENCHMARK(ReplayDocument)->Unit(benchmark::kMicrosecond);

const char* bench_model() { return std::getenv("DSV3_BENCH_MODEL"); }

struct Model {
  LoadedModel m = load_model(bench_model(), /*with_mtp=*/false);
  ThreadPool pool{int(std::thread::hardware_concurrency())};
};
Model& model() {
  static Model m;
  return m;
}

void DecodeStep(benchmark::State& state) {
  Model& m = model();
  Sequence seq(*m.m.model, 512);
  const std::vector<int32_t> prompt = vocab().tok.encode("Describe a person as JSON.");
  seq.feed(prompt, m.pool);
  int32_t t = prompt.back();
  for (auto _ : state) {
    if (seq.room() < 1) seq.truncate(int64_t(prompt.size()));
    seq.feed(std::span(&t, 1), m.pool);
  }
}

// Decode under the schema at temperature 1 on the model's own logits: forward time and
// constraint time (sample_constrained + accept, minus an unconstrained sample's cost) per step.
void ConstrainedDecode(benchmark::State& state) {
  Model& m = model();
  const Vocab& v = vocab();
  const std::vector<int32_t> prompt = v.tok.encode("Describe a person as JSON.");
  double forward_s = 0, constraint_s = 0, sample_s = 0;
  int64_t steps = 0, masks = 0, checks = 0;
  for (auto _ : state) {
    Sequence seq(*m.m.model, 512);
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = uint64_t(steps);
    Sampler sampler(p), plain(p);
    TokenConstraint c(v.trie, v.grammar, v.eos);
    seq.feed(prompt, m.pool);
    for (int i = 0; i < 64 && !c.finished(); ++i) {
      auto t0 = Clock::now();
      benchmark::DoNotOptimize(plain.sample(seq.logits()));
      auto t1 = Clock::now();
      const int32_t t = sample_constrained(sampler, seq.logits(), c);
      if (t < 0 || c.is_eos(t)) break;
      c.accept(t);
      auto t2 = Clock::now();
      seq.feed(std::span(&t, 1), m.pool);
      auto t3 = Clock::now();
      sample_s += std::chrono::duration<double>(t1 - t0).count();
      constraint_s += std::chrono::duration<double>(t2 - t1).count() - std::chrono::duration<double>(t1 - t0).count();
      forward_s += std::chrono::duration<double>(t3 - t2).count();
      ++steps;
    }
    masks += c.stats().masks_computed;
    checks += c.stats().checks;
  }
  state.counters["steps"] = double(steps);
  state.counters["forward_ms_per_step"] = 1e3 * forward_s / double(steps);
  state.counters["sample_ms_per_step"] = 1e3 * sample_s / double(steps);
  state.counters["constraint_ms_per_step"] = 1e3 * constraint_s / double(steps);
  state.counters["constraint_share"] = constraint_s / forward_s;
  state.counters["masks_computed"] = double(masks);
  state.counters["checks"] = double(checks);
}

int register_model_benchmarks = [] {
  if (bench_model()) {
    benchmark::RegisterBenchmark("DecodeStep", DecodeStep)->Unit(benchmark::kMillisecond)->MinTime(2.0);
    benchmark::RegisterBenchmark("ConstrainedDecode", ConstrainedDecode)->Unit(benchmark::kMillisecond)->Iterations(8);
  }
  return 0;
}();

}  // namespace
}  // namespace dsv3

BENCHMARK_MAIN();
