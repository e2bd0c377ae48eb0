#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "model/synth.h"

namespace dsv3::cli {

Run add_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth", "Write a random-weight checkpoint in the Hugging Face DeepSeek-V3 layout");
  struct Opts {
    std::string preset = "tiny", dtype = "fp8", out, config;
    int64_t layers = 0, mtp_layers = -1;
    uint64_t seed = 0;
    double shard_gb = 1.0;
    bool force = false;
    std::string tokenizer;
  };
  auto o = std::make_shared<Opts>();
  auto* preset = cmd->add_option("--preset", o->preset,
                                 "tiny (~10M params), small (~0.8B), medium (~2B, 64 experts / 6 active)")
                     ->check(CLI::IsMember({"tiny", "small", "medium"}))->capture_default_str();
  cmd->add_option("--config", o->config,
                  "A Hugging Face config.json to build instead of a preset (e.g. DeepSeek-V3's own; with "
                  "--layers 2 that is ~16 GB in FP8 without MTP)")
      ->excludes(preset)->check(CLI::ExistingFile);
  cmd->add_option("--layers", o->layers,
                  "Keep only the first N main layers (the dense ones, but at most N - 1, then MoE: --layers 2 of "
                  "DeepSeek-V3 gives 1 dense + 1 MoE layer)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--mtp-layers", o->mtp_layers, "MTP modules to write (default: as the config says; 0: none)")
      ->check(CLI::Range(int64_t(0), int64_t(16)));
  cmd->add_option("--dtype", o->dtype, "Linear weights: fp8 (e4m3, 128x128 block scales) or bf16")
      ->check(CLI::IsMember({"fp8", "bf16"}))->capture_default_str();
  cmd->add_option("--out", o->out, "Output folder (must not exist or be empty, unless --force)")->required();
  cmd->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  cmd->add_option("--shard-size", o->shard_gb, "Largest shard in GB")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_flag("--force", o->force, "Replace an existing output folder");
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Folder with DeepSeek-V3's tokenizer.json + tokenizer_config.json to include (vocab becomes 129280); "
                  "scripts/setup puts them in third_party/npm/deepseek_v3");
  return [o] {
    SynthOptions opt;
    opt.out_dir = o->out;
    opt.fp8 = o->dtype == "fp8";
    opt.seed = o->seed;
    opt.force = o->force;
    opt.shard_bytes = uint64_t(o->shard_gb * 1e9);
    opt.tokenizer_dir = o->tokenizer;
    ModelConfig c = o->config.empty() ? synth_preset(o->preset) : ModelConfig::from_file(o->config);
    if (o->layers > 0) c = cut_layers(c, o->layers);
    if (o->mtp_layers >= 0) c.num_nextn_predict_layers = o->mtp_layers;
    write_synthetic_checkpoint(c, opt);
    const std::string from = o->config.empty() ? "preset " + o->preset : o->config;
    std::printf("wrote %s (%s, %lld layers, %s, RANDOM WEIGHTS)\n", o->out.c_str(), from.c_str(),
                (long long)c.num_hidden_layers, o->dtype.c_str());
    return 0;
  };
}

}  // namespace dsv3::cli
