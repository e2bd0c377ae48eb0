#include "cli/common.h"

#include <pthread.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/collectives.h"
#include "core/error.h"
#include "engine/gguf_tokenizer.h"
#include "io/config.h"
#include "io/gguf_names.h"
#include "model/lockstep.h"

namespace dsv3::cli {

namespace fs = std::filesystem;

void add_sampling_options(CLI::App* cmd, SamplingOptions& o) {
  cmd->add_option("--max-new-tokens,-n", o.max_new_tokens, "Most tokens to generate per answer")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30))->capture_default_str();
  cmd->add_option("--temperature", o.params.temperature, "Sampling temperature (0 = greedy)")
      ->check(CLI::Range(0.0f, 100.0f))->capture_default_str();
  cmd->add_option("--top-k", o.params.top_k, "Keep the k most likely tokens (0 = off)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--top-p", o.params.top_p, "Nucleus sampling: keep the smallest set with this mass (1 = off)")
      ->check(CLI::Range(0.0f, 1.0f))->capture_default_str();
  cmd->add_option("--min-p", o.params.min_p, "Drop tokens below min-p x the top probability (0 = off)")
      ->check(CLI::Range(0.0f, 1.0f))->capture_default_str();
  cmd->add_option("--seed", o.params.seed, "Random seed: the same seed gives the same text")->capture_default_str();
  cmd->add_option("--speculative", o.speculative,
                  "Self-speculative decoding with the checkpoint's MTP module: mtp (1 draft token) or mtp:K");
}

int SamplingOptions::speculative_k() const {
  if (speculative.empty()) return 0;
  if (speculative == "mtp") return 1;
  if (speculative.rfind("mtp:", 0) == 0) {
    const std::string k = speculative.substr(4);
    DSV3_CHECK(!k.empty() && k.find_first_not_of("0123456789") == std::string::npos && k.size() <= 2 &&
                   std::stoi(k) >= 1 && std::stoi(k) <= 16,
               "--speculative: '", speculative, "': K must be an integer from 1 to 16");
    return std::stoi(k);
  }
  fail("--speculative: '", speculative, "' is not supported (mtp or mtp:K)");
}

void add_load_options(CLI::App* cmd, LoadOptions& load) {
  cmd->add_flag_callback("--no-mmap", [&load] { load.mmap = false; },
                         "Read the weights into memory backed by transparent huge pages instead of mapping "
                         "the files (fewer TLB misses; costs RAM and load time)");
  cmd->add_flag("--mlock", load.mlock, "Lock the weights in RAM so they are never paged out");
  cmd->add_flag("--recache", load.recache,
                "Drop the checkpoint's files from the page cache before mapping them, so that they are read back "
                "in 2 MiB pages (fewer TLB misses, as --no-mmap, without the copy; needs a filesystem with large "
                "folios, e.g. ext4 or XFS on Linux 6.x). Costs one read of the files from disk; `dsv3 bench` "
                "reports the share in huge pages")
      ->excludes("--no-mmap");
}

void add_kv_cache_option(CLI::App* cmd, std::string& kv_cache) {
  kv_cache = "auto";
  cmd->add_option("--kv-cache", kv_cache,
                  "Latent KV cache storage: auto (bf16, or f16 for a GGUF file), bf16 (as DeepSeek's own cache: half "
                  "the memory and bandwidth of f32), f16 (as llama.cpp's: 3 more significant bits in the same bytes) "
                  "or f32 (the reference's; on random-weight models 16-bit rounding can flip fragile expert routing, "
                  "see docs/perplexity.md)")
      ->check(CLI::IsMember({"auto", "bf16", "f16", "f32"}))->capture_default_str();
}

std::string resolve_kv_cache(const std::string& kv_cache, const std::string& model) {
  if (kv_cache != "auto") return kv_cache;
  return GgufModel::is_gguf_path(model) ? kv_cache_name(kDefaultGgufCacheDType) : kv_cache_name(kDefaultCacheDType);
}

std::string kv_cache_name(DType dtype) {
  DSV3_ASSERT(dtype == DType::BF16 || dtype == DType::F16 || dtype == DType::F32);
  return dtype == DType::BF16 ? "bf16" : dtype == DType::F16 ? "f16" : "f32";
}

DType kv_cache_dtype(const std::string& kv_cache) {
  DSV3_CHECK(kv_cache != "auto", "--kv-cache auto must be resolved for a model first (resolve_kv_cache)");
  return kv_cache == "bf16" ? DType::BF16 : kv_cache == "f16" ? DType::F16 : DType::F32;
}

Tokenizer load_tokenizer(const std::string& dir) {
  if (GgufModel::is_gguf_path(dir)) return tokenizer_from_gguf(GgufModel::open(dir).metadata());
  DSV3_CHECK(fs::exists(fs::path(dir) / "tokenizer.json"), dir,
             ": no tokenizer.json (a checkpoint folder with the model's tokenizer files is needed for text)");
  return Tokenizer::from_dir(dir);
}

Tokenizer load_model_tokenizer(const std::string& dir) {
  Tokenizer tok = load_tokenizer(dir);
  const bool gguf = GgufModel::is_gguf_path(dir);
  const int64_t vocab = gguf ? gguf::config_from_gguf(GgufModel::open(dir)).vocab_size
                             : ModelConfig::from_file((fs::path(dir) / "config.json").string()).vocab_size;
  DSV3_CHECK(tok.vocab_size() <= vocab, dir, gguf ? ": tokenizer.ggml.tokens has" : ": tokenizer.json has",
             " token ids up to ", tok.vocab_size() - 1, ", beyond the model's vocabulary of ", vocab,
             gguf ? " (deepseek2.vocab_size)" : " (config.json vocab_size)", ": the tokenizer files belong to another model");
  return tok;
}

ChatTemplate load_chat_template(const std::string& dir, const std::string& template_file) {
  const fs::path p = fs::path(dir) / "tokenizer_config.json";
  if (!template_file.empty()) {
    std::ifstream in(template_file, std::ios::binary);
    DSV3_CHECK(in, template_file, ": cannot open the chat template file");
    std::stringstream text;
    text << in.rdbuf();
    std::string bos = "<｜begin▁of▁sentence｜>";
    if (std::ifstream cfg_in(p); cfg_in) {
      const auto cfg = nlohmann::json::parse(cfg_in, nullptr, false);
      if (cfg.is_object() && cfg.contains("bos_token") && cfg["bos_token"].is_string())
        bos = cfg["bos_token"].get<std::string>();
    }
    try {
      return ChatTemplate::from_template(text.str(), bos);
    } catch (const Error& e) {
      fail(template_file, ": ", e.what());
    }
  }
  if (GgufModel::is_gguf_path(dir)) return chat_template_from_gguf(GgufModel::open(dir).metadata());
  DSV3_CHECK(fs::exists(p), dir, ": no tokenizer_config.json (needed for the chat template; --raw skips it)");
  return ChatTemplate::from_tokenizer_config(p);
}

ChatModel load_chat_model(const std::string& dir, const LoadOptions& load, const std::string& template_file) {
  Tokenizer tok = load_model_tokenizer(dir);
  ChatTemplate tmpl = load_chat_template(dir, template_file);
  return ChatModel{load_model_on_all_ranks(dir, true, load), std::move(tok), std::move(tmpl)};
}

LoadedModel load_model_on_all_ranks(const std::string& dir, bool with_mtp, const LoadOptions& load) {
  return load_model(dir, with_mtp, load, &collectives());
}

bool follow_rank0(const LoadedModel& m, ThreadPool& pool) {
  Collectives& comm = collectives();
  if (comm.rank() == 0) return false;
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  follow(*m.model, comm, pool);
  return true;
}

}  // namespace dsv3::cli
