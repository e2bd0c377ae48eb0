#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/generate.h"
#include "model/transformer.h"

namespace dsv3::cli {

Run add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Continue a prompt of token ids through the KV cache");
  struct Opts {
    std::string model, prompt_ids;
    int64_t max_new = 32;
    double temperature = 0.0;
    bool print_ids = false, ignore_eos = false;
    int threads = 1;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Checkpoint folder")->required();
  cmd->add_option("--prompt-ids", o->prompt_ids, "Prompt token ids, comma-separated")->required();
  cmd->add_option("--max-new-tokens,-n", o->max_new, "Tokens to generate")->check(CLI::Range(int64_t(1), int64_t(1) << 30))
      ->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  cmd->add_flag("--print-ids", o->print_ids, "Print the new token ids, comma-separated");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep going past the end-of-sequence token");
  add_threads_option(cmd, o->threads);
  return [o] {
    DSV3_CHECK(o->temperature == 0.0, "--temperature: only 0 (greedy) is supported by this build");
    const auto ids = parse_ids(o->prompt_ids, "--prompt-ids");
    LoadedModel m = load_model(o->model);
    ThreadPool pool(o->threads);
    KVCache cache = m.model->make_cache(int64_t(ids.size()) + o->max_new);
    GenerateOptions g;
    g.max_new_tokens = o->max_new;
    g.stop_at_eos = !o->ignore_eos;
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = generate_greedy(*m.model, ids, cache, g, pool);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string line;
    for (size_t i = 0; i < out.size(); ++i) line += (i ? "," : "") + std::to_string(out[i]);
    std::printf("%s\n", line.c_str());
    std::fprintf(stderr, "%zu prompt + %zu new tokens in %.2fs (%d threads)\n", ids.size(), out.size(), secs,
                 o->threads);
    (void)o->print_ids;  // ids are the only output until the tokenizer lands
    return 0;
  };
}

}  // namespace dsv3::cli
