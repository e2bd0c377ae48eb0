// Pieces shared by the commands that talk to a model: loading a checkpoint with its tokenizer
// and chat template, and the sampling options.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "engine/sampler.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::cli {

struct SamplingOptions {
  SamplingParams params;
  int64_t max_new_tokens = 256;
  std::string speculative;  // "", "mtp" or "mtp:K"
  int speculative_k() const;
};
// --temperature, --top-k, --top-p, --min-p, --seed, --max-new-tokens, --speculative.
void add_sampling_options(CLI::App* cmd, SamplingOptions& o);

// --no-mmap (read weights into huge-page-backed memory), --mlock and --recache.
void add_load_options(CLI::App* cmd, LoadOptions& load);

// --kv-cache auto|bf16|f16|f32 (default auto): the latent cache's storage type.
void add_kv_cache_option(CLI::App* cmd, std::string& kv_cache);
// The name --kv-cache gave, with "auto" resolved for the model at `model` (a folder or a .gguf
// file): bf16, or f16 for GGUF files (model/kv_cache.h).
std::string resolve_kv_cache(const std::string& kv_cache, const std::string& model);
std::string kv_cache_name(DType dtype);
// The storage type of a resolved name.
DType kv_cache_dtype(const std::string& kv_cache);

// The tokenizer files of `dir` (tokenizer.json, tokenizer_config.json), or the tokenizer and
// chat template in a GGUF file's metadata when `dir` is a .gguf file; throws a clear error
// naming the folder or file when they are missing.
Tokenizer load_tokenizer(const std::string& dir);
// load_tokenizer, for running the model of `dir`: throws (one line) when the tokenizer holds
// ids beyond the model's vocabulary (config.json vocab_size), i.e. belongs to another model.
Tokenizer load_model_tokenizer(const std::string& dir);
// The chat template of `dir`'s tokenizer_config.json or, when `template_file` is set, the Jinja
// text of that file (with the config's BOS token); the family is recognised from the text.
ChatTemplate load_chat_template(const std::string& dir, const std::string& template_file = {});

struct ChatModel {
  LoadedModel loaded;
  Tokenizer tokenizer;
  ChatTemplate chat_template;
};
// Both load this rank's share of the model when run under mpirun (every rank calls them).
ChatModel load_chat_model(const std::string& dir, const LoadOptions& load = {}, const std::string& template_file = {});
LoadedModel load_model_on_all_ranks(const std::string& dir, bool with_mtp, const LoadOptions& load);

// Under mpirun with several ranks, ranks other than 0 run the forward steps rank 0 announces
// (model/lockstep.h) until rank 0 is done, and return true: the command then returns 0. Only
// rank 0 decides when the job ends, so the followers block SIGINT and SIGTERM (mpirun passes
// them to every rank). Rank 0, or one process: returns false at once.
bool follow_rank0(const LoadedModel& m, ThreadPool& pool);

}  // namespace dsv3::cli
