#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "io/npy.h"
#include "model/transformer.h"

namespace dsv3::cli {

Run add_logits(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Run a prompt and write the logits of every position as float32 .npy");
  struct Opts {
    std::string model, ids, out;
    int threads = 1;
    bool mtp = false;
    std::string kv_cache;
    LoadOptions load;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Checkpoint folder, or a GGUF file (.gguf; any part of a split set)")->required();
  cmd->add_option("--ids", o->ids, "Prompt token ids, comma-separated (e.g. 0,17,42)")->required();
  cmd->add_option("--out", o->out, "Output .npy file, shape [positions, vocab]")->required();
  cmd->add_flag("--mtp", o->mtp,
                "Write the MTP head's logits instead: rows 0..n-2, row i from h[i] and token i+1 (predicts token i+2)");
  add_load_options(cmd, o->load);
  add_threads_option(cmd, o->threads);
  add_kv_cache_option(cmd, o->kv_cache);
  return [o] {
    o->kv_cache = resolve_kv_cache(o->kv_cache, o->model);
    const auto ids = parse_ids(o->ids, "--ids");
    LoadedModel m = load_model_on_all_ranks(o->model, true, o->load);
    ThreadPool pool(o->threads);
    if (follow_rank0(m, pool)) return 0;
    KVCache cache = m.model->make_cache(int64_t(ids.size()), kv_cache_dtype(o->kv_cache));
    const int64_t vocab = m.config.vocab_size;
    const int64_t n = int64_t(ids.size()), dim = m.config.hidden_size;
    std::vector<float> logits(size_t(n * vocab));
    if (!o->mtp) {
      m.model->forward(ids, 0, cache, logits.data(), /*all_logits=*/true, pool);
    } else {
      DSV3_CHECK(m.model->mtp_depth() > 0, o->model, ": --mtp: the checkpoint has no MTP module weights (model.layers.",
                 m.config.num_hidden_layers, ".*)");
      DSV3_CHECK(n >= 2, "--mtp needs at least 2 prompt ids (row i reads token i+1)");
      std::vector<float> hidden(size_t(n * dim));
      m.model->forward(ids, 0, cache, logits.data(), /*all_logits=*/false, pool, nullptr, hidden.data());
      m.model->mtp_forward(0, std::span(ids).subspan(1), hidden.data(), 0, cache, logits.data(), true, pool);
      logits.resize(size_t((n - 1) * vocab));
    }
    const int64_t rows = o->mtp ? n - 1 : n;
    write_npy_f32(o->out, logits, {rows, vocab});
    std::fprintf(stderr, "wrote %s [%lld, %lld]%s\n", o->out.c_str(), (long long)rows, (long long)vocab,
                 o->mtp ? " (MTP head)" : "");
    return 0;
  };
}

}  // namespace dsv3::cli
