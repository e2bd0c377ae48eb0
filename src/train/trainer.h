// `dsv3 train`: the training loop. Batches of B sequences x seq_len tokens drawn at random
// offsets (a pure function of seed, step and micro-step, so a resumed run sees the same
// batches), gradient accumulation, AdamW with warmup + cosine, clipping, the balance-bias
// update, periodic validation, CSV logs and atomic checkpoints.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "core/collectives.h"
#include "io/config.h"
#include "train/balance.h"
#include "train/linear.h"
#include "train/optimizer.h"
#include "train/save.h"

namespace dsv3::train {

struct TrainOptions {
  ModelConfig model;
  std::string text;            // training text (UTF-8)
  std::string tokenizer;       // tokenizer.json; empty: byte-level (written by train_bpe)
  std::string out;             // run folder: checkpoint/, data/, train.csv, balance.csv
  int64_t batch = 8, seq_len = 128, accum = 1;
  OptimConfig optim;
  Balance balance = Balance::AuxFree;
  double balance_alpha = 1e-4;  // sequence-wise loss weight (aux-free: complementary)
  double bias_gamma = 1e-2;     // bias update per step (the report: 1e-3 over ~10^5 steps; ours are ~10^3)
  double mtp_lambda = 0.3;      // 0: MTP module off
  Precision precision = Precision::F32;
  SaveDType save_dtype = SaveDType::FP8;
  int threads = 2;
  uint64_t seed = 1;
  int64_t eval_every = 100, eval_tokens = 32768, save_every = 500, log_every = 10;
  bool resume = false;
  int64_t stop_after = -1;  // > 0: save and return after this many steps of this invocation
  bool quiet = false;

  std::string to_json() const;  // the settings that must match on resume
};

// Named presets: "default" (the embedded model), "test" (seconds, for the test suite).
TrainOptions train_preset(const std::string& name);
// Throws dsv3::Error for invalid hyperparameters or model settings.
void validate(const TrainOptions& o);

struct TrainResult {
  int64_t steps_done = 0;
  double last_loss = 0, val_loss = 0, val_bpb = 0, unigram_bpb = 0, tokens_per_s = 0;
  bool interrupted = false;
};

// Runs (or resumes) training. `stop` is polled between steps (SIGINT): when set, the current
// state is saved and training returns with interrupted = true. Over several ranks (`comm`,
// default: the process's collectives) every rank calls this with the same options; each step's
// micro-batches (--accum) are shared out and the result equals one process's bit for bit
// (train/data_parallel.h). Only rank 0 reads the text, writes files and prints; the returned
// validation figures are rank 0's.
TrainResult run_training(const TrainOptions& o, const std::atomic<bool>* stop = nullptr, Collectives* comm = nullptr);

}  // namespace dsv3::train
