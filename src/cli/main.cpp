// dsv3: one binary, several subcommands (inspect, logits, generate, synth, ...).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <sstream>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "cli/commands.h"
#include "core/collectives.h"
#include "core/error.h"
#include "kernels/variant.h"

namespace {
int run(int argc, char** argv);
int fail_job(const char* what);
}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Each forward pass allocates and frees activation buffers of up to a few MB (logits rows of
  // a 129K vocabulary are 0.5 MB per sequence). glibc serves such blocks with fresh mmaps or
  // trims them off the heap top, so every step page-faulted them in again (~3% of a batched
  // decode step); keep them on the heap instead.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  // Under mpirun, MPI starts here, on the thread that will call the model (docs/distributed.md).
  try {
    dsv3::init_collectives(argc, argv);
  } catch (const dsv3::Error& e) {
    std::fprintf(stderr, "dsv3: error: %s\n", e.what());
    return 1;
  }
  const int code = run(argc, argv);
  dsv3::finalize_collectives();
  return code;
}

namespace {

int run(int argc, char** argv) {
  CLI::App app{"dsv3: DeepSeek-V3 inference engine in C++ (loads Hugging Face DeepSeek-V3 checkpoints as they are)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dsv3 0.1.0");
  // Given before or after the subcommand (fallthrough): `dsv3 bench --kernels avx512bf16 ...`.
  app.fallthrough();
  std::string kernel_variant;
  app.add_option("--kernels", kernel_variant,
                 "Kernel variant: f32 (the best float32 one this CPU runs: the reference numerics; GGUF block "
                 "formats take integer activations on every SIMD variant, int16 or 8-bit for Q4_K, scalar is their "
                 "float32 reference), scalar, "
                 "avx2, avx512, or avx512bf16 (BF16/FP8 weights times activations rounded to BF16, as "
                 "DeepSeek's inference does: mean KL 1.4e-4 against float32 on models/dsv3-kjv; "
                 "docs/kernels.md). Default: the best one this CPU runs, or DSV3_KERNELS");
  std::map<CLI::App*, dsv3::cli::Run> runs;
  auto reg = [&](dsv3::cli::Run (*add)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    dsv3::cli::Run r = add(app);
    runs[app.get_subcommands({})[before]] = std::move(r);
  };
  reg(dsv3::cli::add_inspect);
  reg(dsv3::cli::add_logits);
  reg(dsv3::cli::add_generate);
  reg(dsv3::cli::add_chat);
  reg(dsv3::cli::add_bench);
  reg(dsv3::cli::add_synth);
  reg(dsv3::cli::add_tokenize);
  reg(dsv3::cli::add_detokenize);
  reg(dsv3::cli::add_chat_template);
  reg(dsv3::cli::add_train);
  reg(dsv3::cli::add_train_tokenizer);
  reg(dsv3::cli::add_train_bench);
  reg(dsv3::cli::add_serve);
  reg(dsv3::cli::add_convert);
  reg(dsv3::cli::add_quantize);
  reg(dsv3::cli::add_perplexity);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (dsv3::collectives().rank() == 0) return app.exit(e);
    std::ostringstream quiet;  // every rank parses the same flags: one copy of the message
    return app.exit(e, quiet, quiet);
  }
  try {
    if (!kernel_variant.empty()) dsv3::kernels::select_variant(kernel_variant);
    for (auto* sub : app.get_subcommands()) return runs.at(sub)();
  } catch (const dsv3::JobError& e) {  // every rank saw it: rank 0 says it, all exit
    if (dsv3::collectives().rank() == 0) std::fprintf(stderr, "dsv3: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    return fail_job(e.what());
  }
  return 0;
}

// An error on this rank alone. One process: report it and exit 1. Under mpirun the other
// ranks may be waiting for this one in a collective, so the whole job is ended (MPI_Abort).
int fail_job(const char* what) {
  dsv3::Collectives& c = dsv3::collectives();
  if (c.size() == 1) {
    std::fprintf(stderr, "dsv3: error: %s\n", what);
    return 1;
  }
  std::fprintf(stderr, "dsv3: %s: error: %s\n", c.describe().c_str(), what);
  std::fflush(stderr);
  c.abort(1);
  return 1;  // not reached (abort ends the process)
}

}  // namespace
