// `dsv3 chat`: an interactive conversation in the terminal, as DeepSeek's generate.py
// --interactive and llama.cpp's CLI: answers stream as they are generated, the KV cache is kept
// across turns (only the new part of the conversation is prefilled), /clear and /exit,
// Ctrl-C stops the current answer.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/generate.h"
#include "tokenizer/utf8.h"

namespace dsv3::cli {

namespace {

std::atomic<bool> g_interrupt{false};
void on_sigint(int) { g_interrupt.store(true); }

struct Opts {
  std::string model, system;
  int64_t ctx_size = 4096;
  bool verbose = false;
  int threads = 1;
  std::string kv_cache;
  LoadOptions load;
  SamplingOptions sampling;
};

int run(const Opts& o) {
  const int spec_k = o.sampling.speculative_k();  // validate flags before the (slow) load
  ChatModel cm = load_chat_model(o.model, o.load);
  DSV3_CHECK(spec_k == 0 || cm.loaded.model->mtp_depth() > 0, o.model,
             ": --speculative needs the checkpoint's MTP module weights (model.layers.",
             cm.loaded.config.num_hidden_layers, ".*), which it does not have");
  const ModelConfig& c = cm.loaded.config;
  const int64_t ctx = std::min(o.ctx_size, c.max_position_embeddings);
  ThreadPool pool(o.threads);
  if (follow_rank0(cm.loaded, pool)) return 0;
  Sequence seq(*cm.loaded.model, ctx, kv_cache_dtype(o.kv_cache));

  struct sigaction sa {};
  sa.sa_handler = on_sigint;  // no SA_RESTART: a Ctrl-C at the prompt interrupts the read
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);

  const bool tty = ::isatty(0) && ::isatty(1);
  std::fprintf(stderr, "dsv3 chat: %s (%s template, context %lld tokens). /exit or Ctrl-D quits, /clear forgets, "
                       "Ctrl-C stops an answer.\n",
               o.model.c_str(), std::string(cm.chat_template.name()).c_str(), (long long)ctx);
  std::vector<ChatMessage> history;
  if (!o.system.empty()) history.push_back(ChatMessage::text("system", o.system));
  const size_t base = history.size();

  for (;;) {
    std::fputs(tty ? "\n\033[1m>>> \033[0m" : ">>> ", stdout);
    std::fflush(stdout);
    std::string line;
    g_interrupt = false;
    if (!std::getline(std::cin, line)) {
      if (g_interrupt.load() && !std::cin.eof()) {  // Ctrl-C at the prompt: stay
        std::cin.clear();
        std::fputs("\n(type /exit or press Ctrl-D to quit)\n", stderr);
        continue;
      }
      std::fputs("\n", stdout);
      return 0;
    }
    if (line == "/exit" || line == "/quit") return 0;
    if (line == "/clear") {
      history.resize(base);
      seq.clear();
      std::fputs("(conversation cleared)\n", stderr);
      continue;
    }
    if (line.empty()) continue;

    std::string text;
    utf8::append_lossy(text, line);
    history.push_back(ChatMessage::text("user", text));
    const std::vector<int32_t> ids = cm.tokenizer.encode(cm.chat_template.render(history, true));
    // Reuse the cache for the longest common prefix with what it already holds.
    const auto& have = seq.tokens();
    size_t common = 0;
    while (common < have.size() && common < ids.size() && have[common] == ids[common]) ++common;
    if (common == ids.size()) --common;  // always feed at least one token to get fresh logits
    seq.truncate(int64_t(common));
    if (int64_t(ids.size()) + 1 > ctx) {
      std::fprintf(stderr, "error: the conversation (%zu tokens) no longer fits the context of %lld tokens; "
                           "/clear starts over (or raise --ctx-size)\n", ids.size(), (long long)ctx);
      history.pop_back();
      continue;
    }

    GenerateOptions g;
    g.max_new_tokens = std::min<int64_t>(o.sampling.max_new_tokens, ctx - int64_t(ids.size()));
    g.sampling = o.sampling.params;
    g.cancel = &g_interrupt;
    g.speculative_k = o.sampling.speculative_k();
    g.on_text = [](std::string_view s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    };
    GenerateResult r;
    try {
      r = generate(seq, std::span(ids).subspan(common), &cm.tokenizer, g, pool);
    } catch (const Error& e) {
      std::fprintf(stderr, "\nerror: %s\n", e.what());
      history.pop_back();
      seq.clear();
      continue;
    }
    std::fputs("\n", stdout);
    if (r.finish_reason == "cancelled") std::fputs("(stopped)\n", stderr);
    history.push_back(ChatMessage::text("assistant", r.text));
    const double fed = double(ids.size() - common);
    if (o.verbose || tty)
      std::fprintf(stderr, "%s[prefill %zu tokens, %.1f tok/s | decode %zu tokens, %.1f tok/s | context %lld/%lld]%s\n",
                   tty ? "\033[2m" : "", ids.size() - common, fed / std::max(r.prefill_seconds, 1e-9),
                   r.tokens.size(), r.tokens.size() / std::max(r.decode_seconds, 1e-9), (long long)seq.pos(),
                   (long long)ctx, tty ? "\033[0m" : "");
    if (spec_k && (o.verbose || tty))
      std::fprintf(stderr, "[speculative mtp:%d: acceptance %.1f%%, %.2f tokens/step]\n", spec_k,
                   100 * r.spec.acceptance_rate(), r.spec.tokens_per_step());
  }
}

}  // namespace

Run add_chat(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "Chat with a model in the terminal (needs the tokenizer files in --model)");
  auto o = std::make_shared<Opts>();
  o->sampling.max_new_tokens = 1024;
  cmd->add_option("--model", o->model, "Checkpoint folder with tokenizer.json and tokenizer_config.json, or a GGUF file (.gguf)")->required();
  cmd->add_option("--system", o->system, "System prompt");
  cmd->add_option("--ctx-size,-c", o->ctx_size, "Context size in tokens")->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--verbose,-v", o->verbose, "Print prefill/decode speed after each answer even when not on a terminal");
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
