#include <cstdio>

#include "cli/commands.h"
#include "model/convert.h"

namespace dsv3::cli {

Run add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert", "Rewrite an FP8 block-scaled checkpoint as BF16 (what DeepSeek's fp8_cast_bf16.py does)");
  struct Opts {
    std::string model, to = "bf16", out;
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--model", o->model, "Checkpoint folder to read")->required();
  cmd->add_option("--to", o->to, "Target weight type")->check(CLI::IsMember({"bf16"}))->capture_default_str();
  cmd->add_option("--out", o->out, "Output folder (must not exist or be empty, unless --force)")->required();
  cmd->add_flag("--force", o->force, "Replace an existing output folder");
  return [o] {
    ConvertOptions opt;
    opt.model_dir = o->model;
    opt.out_dir = o->out;
    opt.force = o->force;
    const ConvertStats st = convert_checkpoint_to_bf16(opt);
    std::printf("wrote %s: %lld FP8 weights -> BF16, %lld tensors copied, %lld scale tensors dropped, "
                "%lld other files copied (%.2f GB -> %.2f GB)\n",
                o->out.c_str(), (long long)st.dequantized, (long long)st.copied, (long long)st.scales_dropped,
                (long long)st.files_copied, double(st.bytes_in) / 1e9, double(st.bytes_out) / 1e9);
    return 0;
  };
}

}  // namespace dsv3::cli
