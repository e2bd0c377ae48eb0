// `dsv3 perplexity`: perplexity and bits per byte of a text under the model, and with
// --compare-reference the agreement of the fast path with the reference path (scalar kernels,
// F32 latent cache, absorbed MLA). The kernel variant is chosen once per process
// (kernels/dispatch.cpp), so the reference runs in a child process of this same binary started
// with DSV3_KERNELS=scalar; it sends its logits back through a pipe, one window at a time.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "engine/perplexity.h"
#include "kernels/ops.h"
#include "model/transformer.h"

extern char** environ;

namespace dsv3::cli {

namespace {

namespace fs = std::filesystem;

struct Opts {
  std::string model, text, ids;
  int64_t ctx = 512, stride = 0, ubatch = 0;
  int threads = 1;
  std::string kv_cache;
  bool compare = false, json = false;
  bool reference_worker = false;  // internal: the child process of --compare-reference
};

std::string read_file(const std::string& path, const char* flag) {
  std::ifstream f(path, std::ios::binary);
  DSV3_CHECK(f.good(), flag, ": cannot open '", path, "'");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Token ids separated by whitespace and/or commas.
std::vector<int32_t> read_ids_file(const std::string& path) {
  std::string s = read_file(path, "--ids");
  for (char& ch : s)
    if (ch == ',' || ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
  std::vector<int32_t> ids;
  size_t p = 0;
  while ((p = s.find_first_not_of(' ', p)) != std::string::npos) {
    const size_t q = std::min(s.find(' ', p), s.size());
    const auto one = parse_ids(s.substr(p, q - p), "--ids " + path);
    ids.insert(ids.end(), one.begin(), one.end());
    p = q;
  }
  return ids;
}

void write_fd(int fd, const void* data, size_t n, const char* what) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    DSV3_CHECK(k > 0, what, ": write failed (", std::strerror(errno), ")");
    p += k;
    n -= size_t(k);
  }
}

// Reads exactly n bytes; false on end of file before the first byte, throws on a short read.
bool read_fd(int fd, void* data, size_t n, const char* what) {
  auto* p = static_cast<uint8_t*>(data);
  size_t got = 0;
  while (got < n) {
    const ssize_t k = ::read(fd, p + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    DSV3_CHECK(k >= 0, what, ": read failed (", std::strerror(errno), ")");
    if (k == 0) {
      DSV3_CHECK(got == 0, what, ": stream ended after ", got, " of ", n, " bytes");
      return false;
    }
    got += size_t(k);
  }
  return true;
}

// The reference run as a child process: `dsv3 perplexity --reference-worker` on the same ids,
// windows and threads, with DSV3_KERNELS=scalar. Protocol: for each window the parent writes one
// byte to the child's stdin; the child answers with the window's scored rows, vocab float32s
// each, on its stdout. Parent and child never compute at the same time.
class ReferenceProcess {
 public:
  ReferenceProcess(const Opts& o, const std::vector<int32_t>& ids, int64_t stride) {
    ids_path_ = fs::temp_directory_path() / ("dsv3_perplexity_ids_" + std::to_string(::getpid()));
    {
      std::ofstream f(ids_path_);
      for (int32_t id : ids) f << id << '\n';
      DSV3_CHECK(f.good(), ids_path_.string(), ": cannot write the token ids for the reference run");
    }
    int to_child[2], from_child[2];
    DSV3_CHECK(::pipe(to_child) == 0 && ::pipe(from_child) == 0, "pipe: ", std::strerror(errno));
    ::fcntl(to_child[1], F_SETFD, FD_CLOEXEC);
    ::fcntl(from_child[0], F_SETFD, FD_CLOEXEC);
    ::signal(SIGPIPE, SIG_IGN);  // a child that died shows as a write error, not a killed parent

    const std::vector<std::string> args{"dsv3",     "perplexity", "--model",  o.model,
                                        "--ids",    ids_path_.string(), "--ctx", std::to_string(o.ctx),
                                        "--stride", std::to_string(stride), "-t",   std::to_string(o.threads),
                                        "--reference-worker"};
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> env_strings{"DSV3_KERNELS=scalar"};
    for (char** e = environ; *e != nullptr; ++e)
      if (std::strncmp(*e, "DSV3_KERNELS=", 13) != 0) env_strings.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    const int rc = ::posix_spawn(&pid_, "/proc/self/exe", &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(to_child[0]);
    ::close(from_child[1]);
    to_child_ = to_child[1];
    from_child_ = from_child[0];
    if (rc != 0) {
      pid_ = -1;
      fail("--compare-reference: cannot start the reference process (", std::strerror(rc), ")");
    }
  }
  ~ReferenceProcess() {
    if (to_child_ >= 0) ::close(to_child_);
    if (from_child_ >= 0) ::close(from_child_);
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    std::error_code ec;
    fs::remove(ids_path_, ec);
  }

  // The reference logits of the next window's scored rows, rows x vocab.
  void next_window(float* rows, size_t n_floats) {
    const char go = 'g';
    try {
      write_fd(to_child_, &go, 1, "reference process");
      DSV3_CHECK(read_fd(from_child_, rows, n_floats * sizeof(float), "reference process"),
                 "reference process: no output");
    } catch (const Error& e) {
      fail("--compare-reference: the reference run failed (", finish(), "; its messages are above): ", e.what());
    }
  }

  // Closes the pipes and waits; says how the child ended.
  std::string finish() {
    ::close(to_child_);
    ::close(from_child_);
    to_child_ = from_child_ = -1;
    int status = 0;
    if (pid_ > 0 && ::waitpid(pid_, &status, 0) == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
      if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    }
    return "status unknown";
  }

 private:
  fs::path ids_path_;
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
};

// The child side of ReferenceProcess.
int run_reference_worker(const Opts& o, const std::vector<int32_t>& ids, int64_t stride) {
  DSV3_CHECK(kernels::active_variant() == "scalar", "--reference-worker expects DSV3_KERNELS=scalar (got ",
             kernels::active_variant(), ")");
  LoadedModel m = load_model(o.model, /*with_mtp=*/false);
  m.model->set_mla_form(MLAForm::Absorb);
  ThreadPool pool(o.threads);
  const auto windows = plan_windows(int64_t(ids.size()), o.ctx, stride);
  const int64_t vocab = m.config.vocab_size;
  WindowRunOptions run;
  run.cache_dtype = DType::F32;
  for (const ScoreWindow& w : windows) {
    char go = 0;
    if (!read_fd(0, &go, 1, "reference worker stdin")) return 0;  // the parent stopped early
    score_windows(*m.model, ids, std::span(&w, 1), run, pool, [&](int64_t, std::span<const float> logits) {
      write_fd(1, logits.data(), size_t(vocab) * sizeof(float), "reference worker stdout");
    });
  }
  return 0;
}

int run_perplexity(const Opts& o) {
  DSV3_CHECK(o.text.empty() != o.ids.empty(), "give exactly one of --text FILE or --ids FILE");
  const int64_t stride = o.stride > 0 ? o.stride : o.ctx;
  // Tokens: BOS + the text (or the ids as given), and the UTF-8 bytes each target stands for.
  std::vector<int32_t> ids;
  std::optional<Tokenizer> tok;
  int64_t text_bytes = -1;
  if (!o.text.empty()) {
    const std::string text = read_file(o.text, "--text");
    tok.emplace(load_model_tokenizer(o.model));
    ids = tok->encode(text);
    const auto bos = tok->bos_id();
    DSV3_CHECK(bos.has_value(), o.model, ": the tokenizer has no BOS token");
    ids.insert(ids.begin(), *bos);
    text_bytes = int64_t(text.size());
  } else {
    ids = read_ids_file(o.ids);
  }
  if (o.reference_worker) return run_reference_worker(o, ids, stride);

  LoadedModel m = load_model_on_all_ranks(o.model, /*with_mtp=*/false, {});
  DSV3_CHECK(o.ctx <= m.config.max_position_embeddings, "--ctx ", o.ctx, " exceeds the model's context (",
             m.config.max_position_embeddings, " positions)");
  const auto windows = plan_windows(int64_t(ids.size()), o.ctx, stride);
  const int64_t vocab = m.config.vocab_size;
  for (size_t i = 0; i < ids.size(); ++i)
    DSV3_CHECK(ids[i] >= 0 && ids[i] < vocab, "token id ", ids[i], " at position ", i,
               " is outside the model's vocabulary [0, ", vocab, ")");
  ThreadPool pool(o.threads);
  if (follow_rank0(m, pool)) return 0;
  WindowRunOptions run;
  run.cache_dtype = kv_cache_dtype(o.kv_cache);
  run.ubatch = o.ubatch;

  std::optional<ReferenceProcess> ref;
  if (o.compare) ref.emplace(o, ids, stride);
  std::vector<float> ref_rows;

  PerplexityStats fast, reference;
  AgreementStats agree;
  int64_t scored_bytes = 0;
  double fast_seconds = 0;
  {
    Progress progress("perplexity", windows.size(), "chunks");
    for (const ScoreWindow& w : windows) {
      if (ref) {
        ref_rows.resize(size_t(w.scored() * vocab));
        ref->next_window(ref_rows.data(), ref_rows.size());
      }
      const auto t0 = std::chrono::steady_clock::now();
      score_windows(*m.model, ids, std::span(&w, 1), run, pool, [&](int64_t target, std::span<const float> logits) {
        const int32_t id = ids[size_t(target)];
        fast.add(token_nll(logits, id));
        if (tok) scored_bytes += int64_t(tok->token_bytes(id).size());
        if (ref) {
          const std::span<const float> r(&ref_rows[size_t((target - w.first_target) * vocab)], size_t(vocab));
          reference.add(token_nll(r, id));
          agree.add(r, logits);
        }
      });
      fast_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      progress.advance(1);
    }
  }
  if (ref) ref->finish();

  const double bpb = tok ? fast.bits_per_byte(scored_bytes) : std::nan("");
  const std::string kernels = kernels::active_variant();
  if (o.json) {
    nlohmann::ordered_json j;
    j["ppl"] = fast.ppl();
    j["bits_per_byte"] = tok ? nlohmann::ordered_json(bpb) : nlohmann::ordered_json(nullptr);
    j["nll_mean"] = fast.mean_nll();
    j["tokens"] = ids.size();
    j["tokens_scored"] = fast.tokens;
    j["bytes_scored"] = tok ? nlohmann::ordered_json(scored_bytes) : nlohmann::ordered_json(nullptr);
    j["text_bytes"] = tok ? nlohmann::ordered_json(text_bytes) : nlohmann::ordered_json(nullptr);
    j["ctx"] = o.ctx;
    j["stride"] = stride;
    j["windows"] = windows.size();
    j["kernels"] = kernels;
    j["kv_cache"] = o.kv_cache;
    j["tokens_per_s"] = double(fast.tokens) / fast_seconds;
    if (ref) {
      j["kl_mean"] = agree.kl_mean();
      j["kl_max"] = agree.kl_max;
      j["top1_agreement"] = agree.top1_agreement();
      j["top1_flip_margin_max"] = agree.flip_margin_max;
      j["ppl_reference"] = reference.ppl();
      j["reference"] = "scalar kernels, f32 kv cache, absorb MLA";
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("tokens: %zu (%s), %zu window%s of ctx %lld, stride %lld; %lld targets scored\n", ids.size(),
              tok ? "BOS + text" : "ids as given", windows.size(), windows.size() == 1 ? "" : "s", (long long)o.ctx,
              (long long)stride, (long long)fast.tokens);
  std::printf("perplexity: %.6f  (mean NLL %.6f nats/token; kernels %s, kv cache %s; %.1f tokens/s)\n", fast.ppl(),
              fast.mean_nll(), kernels.c_str(), o.kv_cache.c_str(), double(fast.tokens) / fast_seconds);
  if (tok)
    std::printf("bits per byte: %.6f  (%lld bytes scored of %lld in the text)\n", bpb, (long long)scored_bytes,
                (long long)text_bytes);
  if (ref) {
    std::printf("reference (scalar kernels, f32 kv cache, absorb MLA): perplexity %.6f\n", reference.ppl());
    std::printf("KL(reference || fast): mean %.3e, max %.3e nats; top-1 agreement %.6f (%lld / %lld)\n",
                agree.kl_mean(), agree.kl_max, agree.top1_agreement(), (long long)agree.top1_agree,
                (long long)agree.positions);
    if (agree.top1_agree < agree.positions)
      std::printf("top-1 differs only where the reference puts the fast choice within %.3g of its own top logit\n",
                  agree.flip_margin_max);
  }
  return 0;
}

}  // namespace

Run add_perplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand("perplexity",
                                 "Perplexity and bits per byte of a text, optionally checked against the reference path");
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Checkpoint folder, or a GGUF file (.gguf; any part of a split set)")->required();
  auto* text = cmd->add_option("--text", o->text, "UTF-8 text file, scored as BOS + its tokens");
  auto* ids = cmd->add_option("--ids", o->ids,
                              "File of token ids (whitespace or comma separated), scored as given; no bits per byte");
  text->excludes(ids);
  cmd->add_option("--ctx", o->ctx, "Tokens per window")->check(CLI::Range(int64_t(2), int64_t(1) << 24))
      ->capture_default_str();
  cmd->add_option("--stride", o->stride,
                  "Window step (default: --ctx, non-overlapping chunks; smaller: sliding window, each target "
                  "scored once with at least ctx - stride tokens of context)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  cmd->add_option("--ubatch", o->ubatch, "Tokens per forward call within a window (default: the whole window; "
                                         "1 scores through the decode path)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  add_threads_option(cmd, o->threads);
  add_kv_cache_option(cmd, o->kv_cache);
  cmd->add_flag("--compare-reference", o->compare,
                "Also run the reference path (scalar kernels, F32 cache, absorbed MLA; in a child process) and "
                "report KL(reference || fast) and top-1 agreement");
  cmd->add_flag("--json", o->json, "Print one JSON object (ppl, bits_per_byte, kl_mean, kl_max, top1_agreement, ...)");
  cmd->add_flag("--reference-worker", o->reference_worker, "internal: the reference process")->group("");
  return [o] {
    o->kv_cache = resolve_kv_cache(o->kv_cache, o->model);
    return run_perplexity(*o);
  };
}

}  // namespace dsv3::cli
