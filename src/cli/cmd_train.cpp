// `dsv3 train`: train a DeepSeek-V3-architecture model on a text (see docs/training.md).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/collectives.h"
#include "core/error.h"
#include "train/bench.h"
#include "train/bpe_trainer.h"
#include "train/trainer.h"

namespace dsv3::cli {

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }
}  // namespace

Run add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a DeepSeek-V3-architecture model from scratch on a UTF-8 text");
  struct Opts {
    std::string preset = "default", config, precision = "f32", balance = "aux-free", dtype = "fp8";
    train::TrainOptions t;
    int64_t steps = -1, batch = -1, seq_len = -1, accum = -1, warmup = -1, eval_every = -1, save_every = -1,
            eval_tokens = -1;
    double lr = -1, alpha = -1, gamma = -1, lambda = -1, wd = -1, clip = -1;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--preset", o->preset, "Settings to start from: default (the embedded model), exp (experiments), test")
      ->capture_default_str();
  cmd->add_option("--config", o->config, "Model config.json to train instead of the preset's architecture");
  cmd->add_option("--data", o->t.text, "Training text (UTF-8); 5% of it, in blocks of 100 lines, is held out")
      ->required();
  cmd->add_option("--tokenizer", o->t.tokenizer, "tokenizer.json (from dsv3 train-tokenizer); default: bytes");
  cmd->add_option("--out", o->t.out, "Run folder: checkpoint/, train.csv, balance.csv, data/")->required();
  cmd->add_option("--steps", o->steps, "Optimizer steps");
  cmd->add_option("--batch", o->batch, "Sequences per micro-batch");
  cmd->add_option("--seq-len", o->seq_len, "Tokens per sequence");
  cmd->add_option("--accum", o->accum,
                  "Micro-batches per step (gradient accumulation); under mpirun they are shared out over the ranks, "
                  "with the same result as one process");
  cmd->add_option("--lr", o->lr, "Peak learning rate (warmup, then cosine to 10%)");
  cmd->add_option("--warmup", o->warmup, "Warmup steps");
  cmd->add_option("--weight-decay", o->wd, "AdamW decoupled weight decay");
  cmd->add_option("--clip", o->clip, "Gradient clipping norm (0: off)");
  cmd->add_option("--balance", o->balance, "Load balancing: aux-free, aux-loss, none")->capture_default_str();
  cmd->add_option("--balance-alpha", o->alpha, "Sequence-wise balance loss weight (aux-free default 1e-4, aux-loss 1e-2)");
  cmd->add_option("--bias-gamma", o->gamma, "Bias update per step of aux-free balancing (default 1e-2)");
  cmd->add_option("--mtp-lambda", o->lambda, "MTP loss weight (0: MTP off; default 0.3)");
  cmd->add_option("--precision", o->precision, "f32, or fp8 (simulated e4m3 GEMM inputs)")->capture_default_str();
  cmd->add_option("--save-dtype", o->dtype, "Checkpoint weights: fp8, bf16, f32")->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "Steps between validation passes");
  cmd->add_option("--eval-tokens", o->eval_tokens, "Validation tokens per pass");
  cmd->add_option("--save-every", o->save_every, "Steps between checkpoints");
  cmd->add_option("--seed", o->t.seed, "Seed of initialisation and batches");
  cmd->add_option("-t,--threads", o->threads, "Threads (results do not depend on it)");
  cmd->add_option("--stop-after", o->t.stop_after, "Save and stop after this many steps (resume later with --resume)");
  cmd->add_flag("--resume", o->t.resume, "Continue from --out/checkpoint if it exists (same settings)");
  cmd->add_flag("-q,--quiet", o->t.quiet, "No progress lines");
  return [o] {
    train::TrainOptions t = train::train_preset(o->preset);
    t.text = o->t.text;
    t.tokenizer = o->t.tokenizer;
    t.out = o->t.out;
    t.seed = o->t.seed;
    t.resume = o->t.resume;
    t.stop_after = o->t.stop_after;
    t.quiet = o->t.quiet;
    if (!o->config.empty()) t.model = ModelConfig::from_file(o->config);
    if (o->steps >= 0) t.optim.steps = o->steps;
    if (o->batch >= 0) t.batch = o->batch;
    if (o->seq_len >= 0) t.seq_len = o->seq_len;
    if (o->accum >= 0) t.accum = o->accum;
    if (o->warmup >= 0) t.optim.warmup = o->warmup;
    if (o->eval_every >= 0) t.eval_every = o->eval_every;
    if (o->eval_tokens >= 0) t.eval_tokens = o->eval_tokens;
    if (o->save_every >= 0) t.save_every = o->save_every;
    if (o->lr != -1) t.optim.lr = o->lr;
    if (o->wd != -1) t.optim.weight_decay = o->wd;
    if (o->clip != -1) t.optim.clip = o->clip;
    if (o->threads > 0) t.threads = o->threads;
    t.balance = train::parse_balance(o->balance);
    t.balance_alpha = o->alpha != -1 ? o->alpha : t.balance == train::Balance::AuxLoss ? 1e-2 : 1e-4;
    if (o->gamma != -1) t.bias_gamma = o->gamma;
    if (o->lambda != -1) t.mtp_lambda = o->lambda;
    DSV3_CHECK(o->precision == "f32" || o->precision == "fp8", "--precision must be f32 or fp8, not ", o->precision);
    t.precision = o->precision == "fp8" ? train::Precision::FP8 : train::Precision::F32;
    t.save_dtype = train::parse_save_dtype(o->dtype);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const train::TrainResult r = train::run_training(t, &g_stop);
    if (collectives().rank() == 0)
      std::fprintf(stderr, "%s after %lld steps: %s%.4f, validation %.4f nats/token = %.4f bits/byte (unigram %.4f)\n",
                   r.interrupted ? "interrupted" : "done", (long long)r.steps_done, "last train loss ", r.last_loss,
                   r.val_loss, r.val_bpb, r.unigram_bpb);
    return r.interrupted ? 130 : 0;
  };
}

Run add_train_tokenizer(CLI::App& app) {
  auto* cmd = app.add_subcommand("train-tokenizer",
                                 "Train a byte-level BPE tokenizer with DeepSeek-V3's pre-tokenizer and special tokens");
  struct Opts {
    int64_t vocab = 0;
    std::string text, out;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--vocab", o->vocab, "Vocabulary size, special tokens included")->required();
  cmd->add_option("--text", o->text, "Training text (UTF-8)")->required();
  cmd->add_option("--out", o->out, "tokenizer.json to write (tokenizer_config.json goes beside it)")->required();
  return [o] {
    std::ifstream in(o->text, std::ios::binary);
    DSV3_CHECK(in, o->text, ": cannot open");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const train::BpeResult r = train::train_bpe(text, o->vocab);
    const std::filesystem::path out(o->out);
    const std::filesystem::path cfg = out.parent_path() / "tokenizer_config.json";
    for (const auto& [path, body] : {std::pair{out, &r.tokenizer_json}, std::pair{cfg, &r.tokenizer_config_json}}) {
      std::ofstream f(path, std::ios::binary);
      DSV3_CHECK(f && (f << *body), path.string(), ": cannot write");
    }
    std::fprintf(stderr, "wrote %s: vocab %lld (%lld merges)\n", o->out.c_str(), (long long)r.vocab_size,
                 (long long)r.merges);
    return 0;
  };
}

Run add_train_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("train-bench", "Measure the FMA peak and the trainer's GEMM throughput");
  auto threads = std::make_shared<int>(2);
  cmd->add_option("-t,--threads", *threads, "Threads")->capture_default_str();
  return [threads] { return train::run_bench(*threads); };
}

}  // namespace dsv3::cli
