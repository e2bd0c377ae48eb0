#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/generate.h"
#include "tokenizer/utf8.h"

namespace dsv3::cli {

namespace {

struct Opts {
  std::string model, prompt_ids, prompt, input_file, system;
  bool raw = false, print_ids = false, ignore_eos = false;
  std::vector<std::string> stop;
  int64_t ctx_size = 0;
  int threads = 1;
  std::string kv_cache;
  LoadOptions load;
  SamplingOptions sampling;
};

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

int run(const Opts& o) {
  const int modes = !o.prompt_ids.empty() + !o.prompt.empty() + !o.input_file.empty();
  DSV3_CHECK(modes == 1, "give exactly one of --prompt-ids, --prompt, --input-file");
  ThreadPool pool(o.threads);
  GenerateOptions g;
  g.max_new_tokens = o.sampling.max_new_tokens;
  g.stop_at_eos = !o.ignore_eos;
  g.sampling = o.sampling.params;
  g.stop = o.stop;
  g.speculative_k = o.sampling.speculative_k();

  if (!o.prompt_ids.empty()) {  // token ids in, token ids out: needs no tokenizer
    DSV3_CHECK(o.stop.empty(), "--stop needs text prompts (the tokenizer); use --prompt");
    const auto ids = parse_ids(o.prompt_ids, "--prompt-ids");
    LoadedModel m = load_model_on_all_ranks(o.model, true, o.load);
    if (follow_rank0(m, pool)) return 0;
    Sequence seq(*m.model, o.ctx_size > 0 ? o.ctx_size : int64_t(ids.size()) + g.max_new_tokens,
                 kv_cache_dtype(o.kv_cache));
    const GenerateResult r = generate(seq, ids, nullptr, g, pool);
    std::printf("%s\n", join_ids(r.tokens).c_str());
    std::fprintf(stderr, "%zu prompt + %zu new tokens: prefill %.2fs, decode %.2fs (%.1f tok/s, %d threads)\n",
                 ids.size(), r.tokens.size(), r.prefill_seconds, r.decode_seconds,
                 r.tokens.size() / std::max(r.decode_seconds, 1e-9), o.threads);
    if (g.speculative_k)
      std::fprintf(stderr, "speculative mtp:%d: %lld steps, acceptance %.1f%%, %.2f tokens/step\n", g.speculative_k,
                   (long long)r.spec.steps, 100 * r.spec.acceptance_rate(), r.spec.tokens_per_step());
    return 0;
  }

  std::vector<std::string> prompts;
  if (!o.prompt.empty()) {
    prompts.push_back(o.prompt);
  } else {
    std::ifstream f(o.input_file);
    DSV3_CHECK(f.good(), o.input_file, ": cannot open the input file");
    for (std::string line; std::getline(f, line);)
      if (!line.empty()) prompts.push_back(line);
    DSV3_CHECK(!prompts.empty(), o.input_file, ": no prompts (one per line)");
  }
  Tokenizer tok = load_model_tokenizer(o.model);
  std::optional<ChatTemplate> tmpl;
  if (!o.raw) tmpl = load_chat_template(o.model);
  LoadedModel m = load_model_on_all_ranks(o.model, true, o.load);
  if (follow_rank0(m, pool)) return 0;
  const bool batch = !o.input_file.empty();
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::string text;
    utf8::append_lossy(text, prompts[i]);  // invalid UTF-8 becomes U+FFFD, as a terminal would show it
    std::vector<int32_t> ids;
    if (tmpl) {
      std::vector<ChatMessage> msgs;
      if (!o.system.empty()) msgs.push_back(ChatMessage::text("system", o.system));
      msgs.push_back(ChatMessage::text("user", text));
      ids = tok.encode(tmpl->render(msgs, /*add_generation_prompt=*/true));
    } else {
      ids = tok.encode(text, /*add_special=*/true);
    }
    const int64_t ctx = o.ctx_size > 0 ? o.ctx_size : int64_t(ids.size()) + g.max_new_tokens;
    Sequence seq(*m.model, ctx, kv_cache_dtype(o.kv_cache));
    if (batch) std::printf("Prompt: %s\nCompletion: ", prompts[i].c_str());
    GenerateOptions gi = g;
    gi.on_text = [](std::string_view s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    };
    const GenerateResult r = generate(seq, ids, &tok, gi, pool);
    std::printf("\n");
    if (o.print_ids) std::printf("ids: %s\n", join_ids(r.tokens).c_str());
    if (batch) std::printf("\n");
    std::fprintf(stderr, "[%zu/%zu] %zu prompt tokens in %.2fs (%.1f tok/s), %zu new in %.2fs (%.1f tok/s), %s\n",
                 i + 1, prompts.size(), ids.size(), r.prefill_seconds, ids.size() / std::max(r.prefill_seconds, 1e-9),
                 r.tokens.size(), r.decode_seconds, r.tokens.size() / std::max(r.decode_seconds, 1e-9),
                 r.finish_reason.c_str());
    if (g.speculative_k)
      std::fprintf(stderr, "speculative mtp:%d: acceptance %.1f%%, %.2f tokens/step\n", g.speculative_k,
                   100 * r.spec.acceptance_rate(), r.spec.tokens_per_step());
  }
  return 0;
}

}  // namespace

Run add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Continue prompts: token ids, a text prompt, or a file of prompts");
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Checkpoint folder, or a GGUF file (.gguf; any part of a split set)")->required();
  cmd->add_option("--prompt-ids", o->prompt_ids, "Prompt as token ids, comma-separated; prints the new ids");
  cmd->add_option("--prompt,-p", o->prompt, "Prompt text (answered with the chat template unless --raw)");
  cmd->add_option("--input-file,-f", o->input_file, "File of prompts, one per line, answered in order");
  cmd->add_option("--system", o->system, "System prompt for the chat template");
  cmd->add_flag("--raw", o->raw, "Plain completion of the text (BOS + text), no chat template");
  cmd->add_option("--stop", o->stop, "Stop string (repeatable); not included in the output");
  cmd->add_flag("--print-ids", o->print_ids, "Also print the new token ids");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep going past the end-of-sequence token");
  cmd->add_option("--ctx-size,-c", o->ctx_size, "Context size in tokens (default: prompt + max-new-tokens)")
      ->check(CLI::NonNegativeNumber);
  add_sampling_options(cmd, o->sampling);
  add_kv_cache_option(cmd, o->kv_cache);
  add_load_options(cmd, o->load);
  add_threads_option(cmd, o->threads);
  return [o] {
    o->kv_cache = resolve_kv_cache(o->kv_cache, o->model);
    return run(*o);
  };
}

}  // namespace dsv3::cli
