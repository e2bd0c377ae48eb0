// Single-thread encode/decode throughput on a few MB of mixed English prose and C++ code.
// Run: build/bench/tokenizer/dsv3_tokenizer_bench  (bytes_per_second is input text per second)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

// Corpus of about `bytes`: English from Debian's licence texts and code from the C++ standard
// library headers, alternated file by file (both ship with every Debian system).
std::string load_corpus(size_t bytes) {
  std::vector<fs::path> prose, code;
  for (const char* dir : {"/usr/share/common-licenses"}) {
    if (fs::is_directory(dir)) {
      for (const auto& e : fs::directory_iterator(dir)) {
        if (e.is_regular_file()) prose.push_back(e.path());
      }
    }
  }
  for (const char* dir :
       {"/usr/include/c++/12/bits", "/usr/include/c++/13/bits", "/usr/include/c++/14/bits"}) {
    if (fs::is_directory(dir)) {
      for (const auto& e : fs::directory_iterator(dir)) {
        if (e.is_regular_file()) code.push_back(e.path());
      }
    }
  }
  std::sort(prose.begin(), prose.end());
  std::sort(code.begin(), code.end());
  std::string text;
  auto append = [&](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str();
  };
  for (size_t i = 0; text.size() < bytes && (!prose.empty() || !code.empty()); ++i) {
    // Prose files are few and long, headers many and short: one prose file per 8 headers.
    if (!prose.empty() && i % 9 == 0) append(prose[(i / 9) % prose.size()]);
    if (!code.empty()) append(code[i % code.size()]);
  }
  if (text.empty())
    text = "The quick brown fox jumps over the lazy dog. int main() { return 0; }\n";
  while (text.size() < bytes) text += text.substr(0, bytes - text.size());
  text.resize(bytes);
  // Cut back to a character boundary.
  while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80) text.pop_back();
  if (!text.empty() && static_cast<unsigned char>(text.back()) >= 0xC0) text.pop_back();
  return text;
}

const dsv3::Tokenizer& tokenizer() {
  static const dsv3::Tokenizer t = dsv3::Tokenizer::from_dir(DSV3_TOKENIZER_DIR);
  return t;
}

const std::string& corpus() {
  static const std::string c = load_corpus(4 << 20);
  return c;
}

void BM_Encode(benchmark::State& state) {
  const auto& tok = tokenizer();
  const auto& text = corpus();
  size_t n = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n);
  state.counters["bytes_per_token"] = static_cast<double>(text.size()) / static_cast<double>(n);
}
BENCHMARK(BM_Encode)->Unit(benchmark::kMillisecond)->MinTime(2.0);

void BM_Decode(benchmark::State& state) {
  const auto& tok = tokenizer();
  const auto ids = tok.encode(corpus());
  for (auto _ : state) {
    auto text = tok.decode(ids);
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus().size()));
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_StreamDecode(benchmark::State& state) {
  const auto& tok = tokenizer();
  const auto ids = tok.encode(corpus());
  for (auto _ : state) {
    dsv3::StreamDecoder stream(tok);
    size_t n = 0;
    for (const int32_t id : ids) n += stream.put(id).size();
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus().size()));
}
BENCHMARK(BM_StreamDecode)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
