#include <cstdio>

#include "cli/commands.h"
#include "core/thread_pool.h"
#include "io/npy.h"
#include "model/transformer.h"

namespace dsv3::cli {

Run add_logits(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Run a prompt and write the logits of every position as float32 .npy");
  struct Opts {
    std::string model, ids, out;
    int threads = 1;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Checkpoint folder")->required();
  cmd->add_option("--ids", o->ids, "Prompt token ids, comma-separated (e.g. 0,17,42)")->required();
  cmd->add_option("--out", o->out, "Output .npy file, shape [positions, vocab]")->required();
  add_threads_option(cmd, o->threads);
  return [o] {
    const auto ids = parse_ids(o->ids, "--ids");
    LoadedModel m = load_model(o->model);
    ThreadPool pool(o->threads);
    KVCache cache = m.model->make_cache(int64_t(ids.size()));
    const int64_t vocab = m.config.vocab_size;
    std::vector<float> logits(ids.size() * size_t(vocab));
    m.model->forward(ids, 0, cache, logits.data(), /*all_logits=*/true, pool);
    write_npy_f32(o->out, logits, {int64_t(ids.size()), vocab});
    std::fprintf(stderr, "wrote %s [%zu, %lld]\n", o->out.c_str(), ids.size(), (long long)vocab);
    return 0;
  };
}

}  // namespace dsv3::cli
