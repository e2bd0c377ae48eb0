// `dsv3 bench`: prefill, decode, batched decode and speculative decode throughput of a
// checkpoint, each next to the bound that limits it (memory read bandwidth measured in the
// same run), each layer's share of a prefill and a decode token (cli/bench_layers.h), as text
// or one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <time.h>
#include <nlohmann/json.hpp>

#include "cli/bench_layers.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/collectives.h"
#include "core/error.h"
#include "core/fma_peak.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "engine/bench.h"
#include "engine/generate.h"
#include "io/mapped_file.h"
#include "kernels/ops.h"

namespace dsv3::cli {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Opts {
  std::string model;
  int64_t prompt_len = 64, gen = 32;
  std::vector<int64_t> batch = {4};  // --batch as given; batches() the sizes measured
  int repetitions = 1;
  std::string speculative = "mtp";
  int threads = 1;
  bool json = false;
  std::string kv_cache;
  std::string project;  // --project: a config whose per-token times to project from the layers
  LoadOptions load;
};

std::vector<int32_t> bench_prompt(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> p = {0};
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  while (int64_t(p.size()) < n) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    p.push_back(int32_t(2 + s % uint64_t(std::max<int64_t>(vocab - 2, 1))));
  }
  return p;
}

// The batch sizes to measure: --batch's values above 1, ascending, each once.
std::vector<int64_t> batches(const Opts& o) {
  std::vector<int64_t> b;
  for (int64_t v : o.batch)
    if (v > 1) b.push_back(v);
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  return b;
}

// Context of every sequence bench runs: the prompt, the decoded tokens and some room.
int64_t bench_context(const Opts& o) { return o.prompt_len + o.gen + 16; }

// Resident memory of the model run: the largest resident set sampled after each phase, while
// that phase's sequences are alive. Not getrusage's peak, which would count the bandwidth
// probe's 1 GiB buffer (allocated and freed before each prefill) as the model's memory.
struct ResidentPeak {
  size_t bytes = 0;
  void sample() { bytes = std::max(bytes, current_rss_bytes()); }
};

// Latent-cache bytes one token reads per cached position (all layers).
double cache_bytes_per_position(const ModelConfig& c, DType kv) {
  return double((c.kv_lora_rank + c.qk_rope_head_dim) * int64_t(dtype_size(kv))) * double(c.num_hidden_layers);
}

// Prompt tokens of each batched-decode sequence.
constexpr int64_t kBatchPrompt = 8;

double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// One repetition: prefill (and the FMA peak measured after it), decode between two bandwidth
// measurements, batched and speculative decode. The per-run metrics.
nlohmann::ordered_json measure_once(const Opts& o, const LoadedModel& m, ThreadPool& pool, int spec_k,
                                    const std::vector<int32_t>& prompt, const StepWeightBytes& wb,
                                    double cache_bytes, double prefill_intensity, ResidentPeak& resident,
                                    Progress& progress) {
  const double bytes_per_token = wb.decode(m.config.num_experts_per_tok);
  const ModelConfig& c = m.config;
  const int64_t ctx = bench_context(o);
  const DType kv = kv_cache_dtype(o.kv_cache);
  nlohmann::ordered_json r;
  Sequence seq(*m.model, ctx, kv);
  // Each layer's time, and the other parts' (model/transformer.h StepTimes): a clock read at
  // each boundary, too few to show in the step times (bench's per-layer report).
  StepTimes prefill_times, decode_times, spec_times;
  m.model->set_step_times(&prefill_times);
  auto t0 = Clock::now();
  const double cpu0 = process_cpu_seconds();
  seq.feed(prompt, pool);
  const double prefill_s = since(t0), prefill_cpu_s = process_cpu_seconds() - cpu0;
  m.model->set_step_times(nullptr);
  progress.advance(1);
  r["prefill_tokens_per_s"] = double(o.prompt_len) / prefill_s;
  // Model FLOPs (engine/bench.h: prefill_flops) against the FMA peak of the kernels' ISA on
  // this many threads, measured now in each thread's CPU time (avx512bf16: the peak of its
  // BF16 dot products, twice the float32 FMA's multiply-adds).
  r["prefill_gflop_per_s"] = prefill_flops(c, o.prompt_len) / prefill_s / 1e9;
  const double peak = fma_peak_gflops_per_core(kernels::active_variant(), o.threads, int64_t(40) << 20) * o.threads;
  // The same per second of this process's CPU time (the pool's spinning included), against one
  // core's peak: on a machine shared with other work, wall-clock shares understate the kernels.
  const double per_cpu = prefill_flops(c, o.prompt_len) / prefill_cpu_s / 1e9;
  r["prefill_gflop_per_cpu_s"] = per_cpu;
  if (peak > 0) {
    r["fma_peak_gflop_per_s"] = peak;
    r["prefill_fma_peak_share"] = r["prefill_gflop_per_s"].get<double>() / peak;
    r["prefill_fma_peak_share_cpu"] = per_cpu / (peak / o.threads);
  }
  // GGUF block formats multiply int16 activations with VPMADDWD (kernels/simd/qgemm.h): their
  // prefill against that instruction's peak too.
  if (dtype_is_block(m.model->weights().head.dtype)) {
    const double dot = int16_dot_peak_gflops_per_core(kernels::active_variant(), o.threads, int64_t(40) << 20) * o.threads;
    if (dot > 0) {
      r["int16_dot_peak_gflop_per_s"] = dot;
      r["prefill_int16_dot_peak_share"] = r["prefill_gflop_per_s"].get<double>() / dot;
      r["prefill_int16_dot_peak_share_cpu"] = per_cpu / (dot / o.threads);
    }
  }
  r["time_to_first_token_s"] = prefill_s;  // the first token is sampled from the prefill's logits
  resident.sample();

  // Plain greedy decode, one sequence, between two measurements of the read bandwidth (a
  // buffer of its own, so the model's pages are not what is measured): on machines whose
  // bandwidth moves from minute to minute the decode is compared with their mean, and a
  // difference between the two says the run straddled a change.
  const double bw_before = measure_read_bandwidth(pool);
  GenerateOptions g;
  g.max_new_tokens = o.gen;
  g.stop_at_eos = false;
  g.on_token = [&](int32_t) {
    progress.advance(1);
    return true;
  };
  m.model->set_step_times(&decode_times);
  const GenerateResult plain = generate(seq, {}, nullptr, g, pool);
  m.model->set_step_times(nullptr);
  const double bw_after = measure_read_bandwidth(pool), bw = (bw_before + bw_after) / 2;
  r["bandwidth_gb_s"] = bw / 1e9;
  r["bandwidth_before_decode_gb_s"] = bw_before / 1e9;
  r["bandwidth_after_decode_gb_s"] = bw_after / 1e9;
  const double decode_tps = double(plain.tokens.size()) / plain.decode_seconds;
  r["decode_tokens_per_s"] = decode_tps;
  r["decode_bandwidth_share"] = decode_tps * (bytes_per_token + cache_bytes) / bw;
  const double decode_flop = decode_flops(c, double(o.prompt_len) + double(o.gen) / 2);
  r["decode_gflop_per_s"] = decode_tps * decode_flop / 1e9;
  r["decode_flop_per_byte"] = decode_flop / (bytes_per_token + cache_bytes);
  add_layer_times(r, c, m.model->weights(), wb, cache_bytes, bw, prefill_times, decode_times);
  resident.sample();

  // Batched decode at each batch size B: B sequences advanced together, one token each per
  // step. Each step reads the experts its B tokens chose once (counted from the step's
  // routing): more bytes than one token's step, which bounds the speedup a memory-bound step
  // can reach. One JSON object per B in r["batches"] (empty without --batch above 1).
  r["batches"] = nlohmann::ordered_json::array();
  for (const int64_t batch : batches(o)) {
    std::vector<Sequence> seqs;
    for (int64_t b = 0; b < batch; ++b) {
      seqs.emplace_back(*m.model, ctx, kv);
      seqs.back().feed(bench_prompt(kBatchPrompt, c.vocab_size, uint64_t(b + 2)), pool);
    }
    std::vector<Sequence*> ptrs;
    for (auto& s : seqs) ptrs.push_back(&s);
    std::vector<int32_t> toks(static_cast<size_t>(batch));
    ForwardTrace routing;
    routing.record_layer_outputs = false;
    double weight_bytes = 0;
    t0 = Clock::now();
    for (int64_t step = 0; step < o.gen; ++step) {
      for (int64_t b = 0; b < batch; ++b) toks[size_t(b)] = argmax(seqs[size_t(b)].logits().data(), c.vocab_size);
      feed_batch(ptrs, toks, pool, &routing);
      weight_bytes += wb.step(batch, distinct_experts(routing));
      progress.advance(1);
    }
    const double s = since(t0);
    resident.sample();
    const double step_weight_bytes = weight_bytes / double(o.gen);
    const double step_bytes = step_weight_bytes + double(batch) * cache_bytes_per_position(c, kv) *
                                                      (double(kBatchPrompt) + double(o.gen) / 2);
    const double tps = double(batch * o.gen) / s, flops = decode_flops(c, double(kBatchPrompt) + double(o.gen) / 2);
    nlohmann::ordered_json b;
    b["batch"] = batch;
    b["decode_tokens_per_s"] = tps;
    b["speedup_vs_single"] = tps / decode_tps;
    b["weight_bytes_per_step"] = step_weight_bytes;
    b["bytes_per_step"] = step_bytes;
    b["bandwidth_share"] = tps / double(batch) * step_bytes / bw;
    // The speedup over one sequence were both steps at the same share of the bandwidth.
    b["speedup_bound"] = double(batch) * (bytes_per_token + cache_bytes) / step_bytes;
    b["gflop_per_s"] = tps * flops / 1e9;
    b["flop_per_byte"] = double(batch) * flops / step_bytes;
    r["batches"].push_back(b);
  }

  // The roofline of this run: each phase's FLOPs per byte read against the ridge (FMA peak /
  // bandwidth), and its achieved GFLOP/s as a share of min(peak, bandwidth x FLOPs per byte),
  // the bound of a kernel at that intensity (decode's share equals decode_bandwidth_share while
  // it is memory-bound).
  if (peak > 0) {
    r["ridge_flop_per_byte"] = peak / (bw / 1e9);
    auto share = [&](double gflops, double intensity) { return gflops / std::min(peak, bw / 1e9 * intensity); };
    r["decode_roofline_share"] = share(r["decode_gflop_per_s"].get<double>(), r["decode_flop_per_byte"].get<double>());
    for (auto& b : r["batches"])
      b["roofline_share"] = share(b["gflop_per_s"].get<double>(), b["flop_per_byte"].get<double>());
    r["prefill_roofline_share"] = share(r["prefill_gflop_per_s"].get<double>(), prefill_intensity);
  }

  // Speculative decode with the MTP module, same prompt, same greedy output.
  if (spec_k > 0) {
    Sequence sseq(*m.model, ctx, kv);
    sseq.feed(prompt, pool);
    progress.advance(1);
    g.speculative_k = spec_k;
    m.model->set_step_times(&spec_times);
    const GenerateResult spec = generate(sseq, {}, nullptr, g, pool);
    m.model->set_step_times(nullptr);
    resident.sample();
    DSV3_CHECK(spec.tokens == plain.tokens, "speculative output differs from plain greedy output (a bug)");
    r["spec_acceptance_rate"] = spec.spec.acceptance_rate();
    r["spec_tokens_per_step"] = spec.spec.tokens_per_step();
    r["spec_decode_tokens_per_s"] = double(spec.tokens.size()) / spec.decode_seconds;
    r["spec_speedup"] = double(spec.tokens.size()) / spec.decode_seconds / decode_tps;
    // What a drafted step costs against a plain one of this run, and the speedup that allows:
    // its tokens per step over that cost (issue 20). The DraftGate makes plain steps instead
    // while drafting does not pay: spec_drafted_step_share says how many steps drafted.
    const SpecStats& st = spec.spec;
    const double cost = st.steps ? st.step_seconds / double(st.steps) * decode_tps : 0.0;
    r["spec_step_cost"] = cost;
    r["spec_draft_share_of_step"] = st.step_seconds > 0 ? st.draft_seconds / st.step_seconds : 0.0;
    r["spec_speedup_bound"] = cost > 0 ? st.tokens_per_step() / cost : 0.0;
    r["spec_drafted_step_share"] = double(st.steps) / double(std::max<int64_t>(1, st.steps + st.plain_steps));
    // The MTP module's time per token it drafted (its forward steps, all of each).
    r["spec_mtp_ms_per_token"] = spec_times.mtp_rows ? 1e3 * spec_times.mtp / double(spec_times.mtp_rows) : 0.0;
  }
  return r;
}

// Each rank's bytes of the weight files held in its own mappings (io residency's Rss: what
// that rank touched, whatever the shared page cache holds), gathered on rank 0 in rank order;
// every rank calls it, the followers after their last step. 0 where smaps cannot be read.
std::vector<uint64_t> gather_resident(const LoadedModel& m) {
  Collectives& comm = collectives();
  const std::optional<Residency> r = m.residency();
  const uint64_t mine = r ? r->resident : 0;
  std::vector<uint64_t> all(size_t(comm.size()));
  const std::vector<size_t> counts(size_t(comm.size()), sizeof(uint64_t));
  comm.gather(&mine, counts, all.data(), 0);
  return all;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int run(const Opts& o) {
  SamplingOptions so;
  so.speculative = o.speculative;
  const int spec_k = o.speculative == "off" ? 0 : so.speculative_k();
  auto t_load = Clock::now();
  LoadedModel m = load_model_on_all_ranks(o.model, true, o.load);
  const double load_s = since(t_load);
  const ModelConfig& c = m.config;
  DSV3_CHECK(bench_context(o) <= c.max_position_embeddings, "--prompt-len ", o.prompt_len, " + --gen ", o.gen,
             " (+16 for speculation) exceeds the model's context of ", c.max_position_embeddings, " positions");
  DSV3_CHECK(spec_k == 0 || m.model->mtp_depth() > 0, o.model,
             ": --speculative needs the checkpoint's MTP module weights; use --speculative off");
  std::optional<ModelConfig> project;  // checked before the minutes of measuring
  if (!o.project.empty()) {
    project = ModelConfig::from_file(o.project);
    check_projectable(c, *project, o.project);
  }
  ThreadPool pool(o.threads);
  // Warm-up: every page of this rank's weights mapped now (a decode step may route to experts
  // the prompt did not, and would pay their page faults inside the measurement: the `small`
  // preset decoded 72 tok/s over 8 tokens and 149 over 64 without this). Under mpirun each rank
  // pages in its own share only.
  const auto t_populate = Clock::now();
  m.populate();
  const double populate_s = since(t_populate);
  if (follow_rank0(m, pool)) {
    gather_resident(m);
    return 0;
  }
  nlohmann::ordered_json j;
  j["model"] = o.model;
  j["threads"] = o.threads;
  j["kernels"] = kernels::active_variant();
  if (const std::string fp8 = kernels::active_fp8_path(); !fp8.empty()) j["fp8_products"] = fp8;
  j["weights"] = o.load.mmap ? "mmap" : "read into huge-page-backed memory (--no-mmap)";
  j["mlock"] = o.load.mlock;
  j["recache"] = o.load.recache;
  j["load_seconds"] = load_s;
  j["weights_file_bytes"] = m.file_bytes();
  j["kv_cache"] = o.kv_cache;
  j["prompt_tokens"] = o.prompt_len;
  j["decode_tokens"] = o.gen;
  j["repetitions"] = o.repetitions;
  const StepWeightBytes wb = step_weight_bytes(c, m.model->weights());
  const double bytes_per_token = wb.decode(c.num_experts_per_tok);
  // Cache bytes read per token: the whole latent window of every layer, averaged over the run.
  const DType kv = kv_cache_dtype(o.kv_cache);
  const double cache_bytes = cache_bytes_per_position(c, kv) * (double(o.prompt_len) + double(o.gen) / 2);
  j["weight_bytes_per_token"] = bytes_per_token;
  j["cache_bytes_per_token"] = cache_bytes;
  j["bytes_per_token"] = bytes_per_token + cache_bytes;
  double prefill_intensity = 0;
  // Prefill reads each weight once for the whole prompt: the experts of an MoE layer as many as
  // its tokens can choose, min(experts, prompt x experts per token) (512 tokens choosing 6 of 64
  // leave a given expert unused with probability (58/64)^512 ~ 1e-22).
  {
    const int64_t chosen = std::min<int64_t>(c.n_routed_experts, o.prompt_len * c.num_experts_per_tok);
    std::vector<int64_t> distinct(wb.expert.size());
    for (size_t l = 0; l < distinct.size(); ++l) distinct[l] = wb.expert[l] > 0 ? chosen : 0;
    prefill_intensity = prefill_flops(c, o.prompt_len) / wb.step(o.prompt_len, distinct);
    j["prefill_flop_per_byte"] = prefill_intensity;
  }
  if (spec_k > 0) j["speculative"] = "mtp:" + std::to_string(spec_k);

  // Warm-up: the weights paged in (above), one prefill, then the repetitions. Each metric is
  // the median over repetitions; with more than one, "<metric>_runs" lists every run's value.
  j["populate_seconds"] = populate_s;
  const auto prompt = bench_prompt(o.prompt_len, c.vocab_size, 1);
  // Progress in forward steps (a prefill is one): the warm-up prefill, then per repetition the
  // prefill, the decode, each batch size's steps and the speculative run's prefill and tokens.
  const int64_t steps_per_run = 1 + o.gen + int64_t(batches(o).size()) * o.gen + (spec_k > 0 ? 1 + o.gen : 0);
  Progress progress("bench", uint64_t(1 + o.repetitions * steps_per_run), "steps");
  {
    Sequence warm(*m.model, bench_context(o), kv);
    warm.feed(prompt, pool);
    progress.advance(1);
  }
  ResidentPeak resident;
  resident.sample();
  // How much of the weights the decode will read through huge-page TLB entries: a file mapping
  // gets them only where the page cache holds 2 MiB folios (how the file was written or read
  // decides that), an anonymous copy (--no-mmap) where the kernel honoured MADV_HUGEPAGE.
  // The share is of the bytes this process has mapped in (its share of the weights under
  // mpirun, where dividing by the whole file would make every rank look short of huge pages).
  const std::optional<Residency> mapped = m.residency();
  if (mapped) {
    j["huge_page_bytes"] = mapped->huge;
    j["huge_page_of_bytes"] = mapped->resident;
    j["huge_page_share"] = double(mapped->huge) / double(std::max<size_t>(1, mapped->resident));
  } else {
    j["huge_page_bytes"] = nullptr;
    j["huge_page_of_bytes"] = nullptr;
    j["huge_page_share"] = nullptr;
  }
  std::vector<nlohmann::ordered_json> runs;
  Collectives& comm = collectives();
  comm.reset_counters();
  for (int rep = 0; rep < o.repetitions; ++rep)
    runs.push_back(measure_once(o, m, pool, spec_k, prompt, wb, cache_bytes, prefill_intensity, resident, progress));
  progress.finish();
  // Under mpirun: rank 0's time inside collectives over all repetitions (waiting for slower
  // ranks included), per forward step (docs/distributed.md).
  j["mpi_ranks"] = comm.size();
  if (comm.size() > 1) {
    const double steps = double(o.repetitions * steps_per_run);
    j["collective_seconds"] = comm.seconds();
    j["collective_calls"] = comm.calls();
    j["collective_ms_per_step"] = 1e3 * comm.seconds() / steps;
  }
  // The weight files' bytes each rank holds in its mappings after the run (its share under
  // mpirun; all the weights in one process), once the followers have left their loop.
  m.model->release_followers();
  const std::vector<uint64_t> rank_resident = gather_resident(m);
  j["weights_resident_bytes"] = rank_resident;
  // The median of `key` over the runs into `out` (with "<key>_runs"); `at` picks the object of
  // a run that holds it.
  auto summarise = [&](nlohmann::ordered_json& out, const std::string& key, auto at) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(at(r)[key].template get<double>());
    out[key] = median(v);
    if (o.repetitions > 1) out[key + "_runs"] = v;
  };
  for (const auto& [key, first] : runs[0].items()) {
    if (key == "layers") {  // one object per layer, its index and kind as they are
      j["layers"] = nlohmann::ordered_json::array();
      for (size_t i = 0; i < first.size(); ++i) {
        nlohmann::ordered_json l;
        for (const auto& [lkey, value] : first[i].items())
          if (lkey == "index" || lkey == "kind")
            l[lkey] = value;
          else
            summarise(l, lkey, [i](const nlohmann::ordered_json& r) -> const nlohmann::ordered_json& { return r["layers"][i]; });
        j["layers"].push_back(l);
      }
      continue;
    }
    if (key != "batches") {
      summarise(j, key, [](const nlohmann::ordered_json& r) -> const nlohmann::ordered_json& { return r; });
      continue;
    }
    // One object per batch size; the largest also as the top-level batch_* figures.
    j["batches"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < first.size(); ++i) {
      nlohmann::ordered_json b;
      b["batch"] = first[i]["batch"];
      for (const auto& [bkey, value] : first[i].items())
        if (bkey != "batch")
          summarise(b, bkey, [i](const nlohmann::ordered_json& r) -> const nlohmann::ordered_json& { return r["batches"][i]; });
      j["batches"].push_back(b);
    }
    if (!j["batches"].empty()) {
      const nlohmann::ordered_json largest = j["batches"].back();  // a copy: adding keys to j moves j's values
      for (const auto& [bkey, value] : largest.items()) j[bkey == "batch" ? bkey : "batch_" + bkey] = value;
    }
  }
  // The largest relative change of the bandwidth across any run's decode.
  double change = 0;
  for (const auto& r : runs) {
    const double a = r["bandwidth_before_decode_gb_s"].get<double>(), b = r["bandwidth_after_decode_gb_s"].get<double>();
    change = std::max(change, std::max(a, b) / std::max(std::min(a, b), 1e-9) - 1);
  }
  j["bandwidth_change_during_decode"] = change;
  summarise_layer_times(j, c, project, o.project);
  j["peak_rss_bytes"] = resident.bytes;
  if (o.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  // A metric of `src` (the report, or one batch size's object) as text: the median, and with
  // repetitions the range of the runs.
  auto val_in = [&](const nlohmann::ordered_json& src, const std::string& key, const char* fmt) {
    char buf[96];
    std::snprintf(buf, sizeof buf, fmt, src[key].get<double>());
    std::string s = buf;
    if (o.repetitions > 1) {
      const auto& v = src[key + "_runs"];
      double lo = v[0].get<double>(), hi = lo;
      for (const auto& x : v) lo = std::min(lo, x.get<double>()), hi = std::max(hi, x.get<double>());
      char a[48], b[48];
      std::snprintf(a, sizeof a, fmt, lo);
      std::snprintf(b, sizeof b, fmt, hi);
      s += std::string(" [") + a + "-" + b + "]";
    }
    return s;
  };
  auto val = [&](const std::string& key, const char* fmt) { return val_in(j, key, fmt); };
  const double pct = 100;
  const std::string fp8_path = j.contains("fp8_products") ? ", FP8 few-token products by " + j["fp8_products"].get<std::string>() : "";
  std::printf("model            %s (%s kernels%s, %d threads)\n", o.model.c_str(), kernels::active_variant().c_str(),
              fp8_path.c_str(), o.threads);
  std::string huge_text = "huge pages unknown";
  if (mapped) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f%% in huge pages", pct * j["huge_page_share"].get<double>());
    huge_text = buf;
  }
  std::printf("weights          %s, %.1f MB (%s), loaded in %.2fs, paged in %.2fs; peak RSS %.1f MB\n",
              j["weights"].get<std::string>().c_str(), double(m.file_bytes()) / 1e6, huge_text.c_str(),
              load_s, j["populate_seconds"].get<double>(), double(resident.bytes) / 1e6);
  if (mapped && o.load.mmap && mapped->huge < mapped->resident * 9 / 10 && mapped->resident >= (64u << 20))
    std::printf("                 (%.0f%% of the weights are mapped with 4 KiB pages%s)\n",
                pct * (1 - j["huge_page_share"].get<double>()),
                // Read back from disk and still small: this filesystem or kernel has no large folios.
                o.load.recache ? " even after --recache: this filesystem or kernel does not cache files in 2 MiB "
                                 "folios; --no-mmap uses huge pages"
                               : ", as the page cache holds them; --recache or --no-mmap maps them with 2 MiB pages, "
                                 "which decode faster: docs/kernels.md");
  if (comm.size() > 1) {
    std::string per_rank;
    for (size_t r = 0; r < rank_resident.size(); ++r) {
      char buf[48];
      std::snprintf(buf, sizeof buf, "%s%.1f", r ? ", " : "", double(rank_resident[r]) / 1e6);
      per_rank += buf;
    }
    std::printf("ranks            %d: weights in each rank's RAM %s MB of the files' %.1f MB; %.2f ms per step in "
                "%lld collectives\n",
                comm.size(), per_rank.c_str(), double(m.file_bytes()) / 1e6, j["collective_ms_per_step"].get<double>(),
                (long long)(j["collective_calls"].get<int64_t>() / std::max<int64_t>(1, o.repetitions * steps_per_run)));
  }
  if (o.repetitions > 1)
    std::printf("repetitions      %d (medians, [min-max] over the runs)\n", o.repetitions);
  std::printf("memory read      %s GB/s (%d threads; mean of %s just before the decode and %s just after)\n",
              val("bandwidth_gb_s", "%.1f").c_str(), o.threads, val("bandwidth_before_decode_gb_s", "%.1f").c_str(),
              val("bandwidth_after_decode_gb_s", "%.1f").c_str());
  if (j["bandwidth_change_during_decode"].get<double>() > 0.2)
    std::printf("                 (the bandwidth moved by up to %.0f%% during a decode: this machine's memory is\n"
                "                 shared or throttled; compare figures from the same run)\n",
                100 * j["bandwidth_change_during_decode"].get<double>());
  std::printf("prefill          %s tok/s (%lld-token prompt, %s GFLOP/s", val("prefill_tokens_per_s", "%.1f").c_str(),
              (long long)o.prompt_len, val("prefill_gflop_per_s", "%.1f").c_str());
  if (j.contains("fma_peak_gflop_per_s"))
    std::printf(" = %.0f%% of the %.0f GFLOP/s %s peak", pct * j["prefill_fma_peak_share"].get<double>(),
                j["fma_peak_gflop_per_s"].get<double>(),
                j["kernels"].get<std::string>() == "avx512bf16" ? "BF16 dot-product" : "FMA");
  if (j.contains("int16_dot_peak_gflop_per_s"))
    std::printf(", %.0f%% of the %.0f GFLOP/s int16 dot-product peak of the block formats' kernels",
                pct * j["prefill_int16_dot_peak_share"].get<double>(), j["int16_dot_peak_gflop_per_s"].get<double>());
  std::printf(", time to first token %ss)\n", val("time_to_first_token_s", "%.3f").c_str());
  if (j.contains("prefill_fma_peak_share_cpu")) {
    std::printf("                 per CPU-second: %s GFLOP/s = %.0f%% of one core's peak",
                val("prefill_gflop_per_cpu_s", "%.1f").c_str(), pct * j["prefill_fma_peak_share_cpu"].get<double>());
    if (j.contains("prefill_int16_dot_peak_share_cpu"))
      std::printf(", %.0f%% of its int16 dot-product peak", pct * j["prefill_int16_dot_peak_share_cpu"].get<double>());
    std::printf(" (robust to sharing the cores)\n");
  }
  const double decode_tps = j["decode_tokens_per_s"].get<double>();
  std::printf("decode           %s tok/s; reads %.1f MB per token (weights %.1f + cache %.2f) = %.2f GB/s = %.0f%% "
              "of read bandwidth\n",
              val("decode_tokens_per_s", "%.1f").c_str(), (bytes_per_token + cache_bytes) / 1e6, bytes_per_token / 1e6,
              cache_bytes / 1e6, decode_tps * (bytes_per_token + cache_bytes) / 1e9,
              pct * j["decode_bandwidth_share"].get<double>());
  for (const auto& b : j["batches"])
    std::printf("batched decode   %lld sequences: %s tok/s = %.2fx one sequence; a step reads %.1f MB (%.2fx a "
                "token's) = %.0f%% of read bandwidth, bound %.2fx\n",
                (long long)b["batch"].get<int64_t>(), val_in(b, "decode_tokens_per_s", "%.1f").c_str(),
                b["speedup_vs_single"].get<double>(), b["bytes_per_step"].get<double>() / 1e6,
                b["bytes_per_step"].get<double>() / (bytes_per_token + cache_bytes), pct * b["bandwidth_share"].get<double>(),
                b["speedup_bound"].get<double>());
  if (!j["batches"].empty())
    std::printf("                 (a step reads the experts its tokens chose, each once; bound: the speedup at one "
                "sequence's share of the bandwidth)\n");
  if (j.contains("ridge_flop_per_byte")) {
    const double peak = j["fma_peak_gflop_per_s"].get<double>(), bw = j["bandwidth_gb_s"].get<double>();
    std::printf("roofline         ridge at %.1f FLOP/byte (%.0f GFLOP/s peak / %.1f GB/s read); "
                "scripts/plot-roofline draws it\n",
                j["ridge_flop_per_byte"].get<double>(), peak, bw);
    auto phase = [&](const std::string& name, const nlohmann::ordered_json& src, const std::string& prefix) {
      const double intensity = src[prefix + "flop_per_byte"].get<double>();
      std::printf("  %-14s %7.2f FLOP/byte, %s GFLOP/s = %3.0f%% of its bound (%s)\n", name.c_str(), intensity,
                  val_in(src, prefix + "gflop_per_s", "%.1f").c_str(), pct * src[prefix + "roofline_share"].get<double>(),
                  bw * intensity < peak ? "memory" : "FMA peak");
    };
    phase("decode", j, "decode_");
    for (const auto& b : j["batches"]) phase("batch " + std::to_string(b["batch"].get<int64_t>()), b, "");
    phase("prefill", j, "prefill_");
  }
  print_layer_times(j);
  if (spec_k > 0)
    std::printf("speculative      mtp:%d: acceptance %.1f%%, %.2f tokens/step, %s tok/s (%.2fx plain decode)\n",
                spec_k, pct * j["spec_acceptance_rate"].get<double>(), j["spec_tokens_per_step"].get<double>(),
                val("spec_decode_tokens_per_s", "%.1f").c_str(), j["spec_speedup"].get<double>());
  if (spec_k > 0 && j["spec_step_cost"].get<double>() > 0)
    std::printf("                 a drafted step costs %.2fx a plain one (%.0f%% of it drafting), so drafting allows "
                "%.2fx; %.0f%% of steps drafted (the rest plain: acceptance too low to pay)\n",
                j["spec_step_cost"].get<double>(), pct * j["spec_draft_share_of_step"].get<double>(),
                j["spec_speedup_bound"].get<double>(), pct * j["spec_drafted_step_share"].get<double>());
  return 0;
}

}  // namespace

Run add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill, decode (and each layer's share), batched and speculative decode against memory bandwidth");
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Checkpoint folder, or a GGUF file (.gguf; any part of a split set)")->required();
  cmd->add_option("-p,--prompt-len", o->prompt_len, "Prompt tokens for the prefill measurement")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))->capture_default_str();
  cmd->add_option("-n,--gen", o->gen, "Tokens to decode")->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  cmd->add_option("--batch", o->batch,
                  "Sequences for the batched-decode measurement, or several sizes to sweep (e.g. 2,4,8,16; 1 = skip); "
                  "the largest is also reported as batch_*")
      ->delimiter(',')->check(CLI::Range(int64_t(1), int64_t(1024)))->capture_default_str();
  cmd->add_option("--speculative", o->speculative, "mtp, mtp:K, or off")->capture_default_str();
  cmd->add_option("-r,--repetitions", o->repetitions,
                  "Measure this many times (after one warm-up) and report medians, with every run's values "
                  "(\"<metric>_runs\" in --json): memory bandwidth and timings vary between runs on shared machines")
      ->check(CLI::Range(1, 100))->capture_default_str();
  cmd->add_flag("--json", o->json,
                "Print one JSON object (with \"layers\": each layer's prefill and decode ms per token, its kind, "
                "the bytes it reads per decoded token and their GB/s; \"layer_kinds\": the dense and MoE means)");
  cmd->add_option("--project", o->project,
                  "A config.json with the measured model's layer shapes but more layers (e.g. the full model a "
                  "`synth --config C --layers 2` slice was cut from): also report its per-token prefill and decode "
                  "times and tok/s per 100 GB/s, from the measured mean dense and MoE layer")
      ->check(CLI::ExistingFile);
  add_kv_cache_option(cmd, o->kv_cache);
  add_load_options(cmd, o->load);
  add_threads_option(cmd, o->threads);
  return [o] {
    o->kv_cache = resolve_kv_cache(o->kv_cache, o->model);
    return run(*o);
  };
}

}  // namespace dsv3::cli
