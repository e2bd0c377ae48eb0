// `dsv3 quantize`: an FP8 or BF16 Hugging Face checkpoint straight to a llama.cpp GGUF file
// (docs/gguf.md). SIGINT / SIGTERM stop it between chunks and leave nothing on disk.
#include <cmath>
#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "model/quantize.h"

namespace dsv3::cli {

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }

}  // namespace

Run add_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize", "Write a GGUF file llama.cpp loads (Q8_0, Q6_K, Q4_K_M, Q2_K_XL, BF16) from an FP8 or BF16 checkpoint");
  struct Opts {
    std::string model, to = "Q4_K_M", out, pre;
    bool force = false, no_mtp = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Checkpoint folder to read (config.json, safetensors, tokenizer)")->required();
  cmd->add_option("--to", o->to,
                  "Type: Q8_0, Q6_K, Q4_K_M or Q2_K_XL (recipes: each tensor class its own type; docs/gguf.md), or BF16")
      ->capture_default_str()
      ->check([](const std::string& s) {
        return quant_target_from_name(s) ? std::string() : "unknown type '" + s + "' (Q8_0, Q6_K, Q4_K_M, Q2_K_XL, BF16)";
      });
  cmd->add_option("--out", o->out, "Output .gguf file (written atomically)")->required();
  cmd->add_flag("--force", o->force, "Replace an existing output file");
  cmd->add_flag("--no-mtp", o->no_mtp,
                "Leave out the multi-token-prediction layer (kept by default as llama.cpp's NextN layer)");
  cmd->add_option("--tokenizer-pre", o->pre,
                  "llama.cpp pre-tokenizer name (default: recognised from tokenizer.json: deepseek-v3, deepseek-llm)");
  add_threads_option(cmd, o->threads);
  return [o] {
    QuantizeOptions opt;
    opt.model_dir = o->model;
    opt.out_path = o->out;
    opt.target = *quant_target_from_name(o->to);
    opt.mtp = !o->no_mtp;
    opt.tokenizer_pre = o->pre;
    opt.force = o->force;
    opt.threads = o->threads;
    opt.stop = &g_stop;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    const QuantizeStats st = quantize_checkpoint(opt);
    // 1.23M / 671B parameters; 12.3 MB / 380 GB.
    auto scaled = [](double v, const char* unit) {
      const char* p = v >= 1e9 ? "G" : v >= 1e6 ? "M" : "k";
      const double d = v >= 1e9 ? 1e9 : v >= 1e6 ? 1e6 : 1e3;
      return str_cat(std::round(v / d * 100) / 100, " ", p, unit);
    };
    std::printf("wrote %s: %s, %lld tensors, %s parameters, %s (%.2f bits per weight); read %s\n", o->out.c_str(),
                std::string(quant_target_name(opt.target)).c_str(), (long long)st.tensors,
                scaled(double(st.params), "").c_str(), scaled(double(st.bytes_out), "B").c_str(), st.bits_per_weight(),
                scaled(double(st.bytes_in), "B").c_str());
    std::printf("tensor types:");
    for (const auto& [type, n] : st.type_counts) std::printf(" %s %lld", std::string(dtype_name(type)).c_str(), (long long)n);
    std::printf("\n");
    return 0;
  };
}

}  // namespace dsv3::cli
