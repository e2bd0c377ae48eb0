#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "io/gguf_names.h"
#include "io/config.h"
#include "model/params.h"

namespace dsv3::cli {

namespace {
std::string human(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.1fB", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}
}  // namespace

Run add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Summarise a checkpoint: architecture, parameters, dtypes, KV-cache size");
  auto model = std::make_shared<std::string>();
  auto json_out = std::make_shared<bool>(false);
  cmd->add_option("--model", *model, "Checkpoint folder (config.json; weights optional), or a GGUF file")->required();
  cmd->add_flag("--json", *json_out, "Print one JSON object for scripts");
  return [model, json_out] {
    const std::string dir = *model;
    ModelConfig c;
    bool synthetic = false, mtp_present = false, weights_mapped = false;
    std::map<std::string, uint64_t> bytes_by_dtype;
    if (GgufModel::is_gguf_path(dir)) {  // a GGUF file: config from its metadata, types as ggml names them
      const GgufModel g = GgufModel::open(dir);
      c = gguf::config_from_gguf(g);
      for (const auto& [name, loc] : g.tensors()) bytes_by_dtype[std::string(loc.info->type.name)] += loc.info->nbytes;
      mtp_present = g.has("blk." + std::to_string(c.num_hidden_layers) + ".nextn.eh_proj.weight");
      weights_mapped = true;
    } else {
      const std::string cfg_path = (std::filesystem::path(dir) / "config.json").string();
      c = ModelConfig::from_file(cfg_path);
      {
        std::ifstream f(cfg_path);
        synthetic = nlohmann::json::parse(f, nullptr, false).contains("dsv3_synthetic");
      }
      const Checkpoint ck = Checkpoint::open(dir, /*weights_required=*/false);
      for (const auto& [name, loc] : ck.tensors())
        bytes_by_dtype[std::string(dtype_name(loc.entry->dtype))] += loc.entry->end - loc.entry->begin;
      const std::string mtp_name = "model.layers." + std::to_string(c.num_hidden_layers) + ".eh_proj.weight";
      mtp_present = ck.has(mtp_name) || ck.index_names().count(mtp_name);
      weights_mapped = ck.has_weights();
    }
    const ParamCounts p = count_params(c);
    int64_t moe_layers = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) moe_layers += c.is_moe_layer(l);

    nlohmann::ordered_json j;
    j["model_type"] = c.model_type;
    j["synthetic_random_weights"] = synthetic;
    j["total_params"] = p.total;
    j["active_params"] = p.active;
    j["mtp_params"] = p.mtp;
    j["mtp_params_stored"] = p.mtp_total;
    j["mtp_present"] = mtp_present;
    j["kv_bytes_per_token"] = p.kv_bytes_per_token_bf16;
    j["num_hidden_layers"] = c.num_hidden_layers;
    j["moe_layers"] = moe_layers;
    j["hidden_size"] = c.hidden_size;
    j["num_attention_heads"] = c.num_attention_heads;
    j["n_routed_experts"] = c.n_routed_experts;
    j["num_experts_per_tok"] = c.num_experts_per_tok;
    j["n_shared_experts"] = c.n_shared_experts;
    j["q_lora_rank"] = c.q_lora_rank;
    j["kv_lora_rank"] = c.kv_lora_rank;
    j["yarn"] = c.rope_scaling.has_value();
    j["fp8"] = c.fp8;
    j["weights_mapped"] = weights_mapped;
    j["bytes_by_dtype"] = bytes_by_dtype;
    if (*json_out) {
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("checkpoint      %s%s\n", dir.c_str(),
                synthetic ? "  (synthetic: RANDOM WEIGHTS written by dsv3 synth)" : "");
    std::printf("architecture    %s: %lld layers (%lld MoE), hidden %lld, %lld heads, vocab %lld\n",
                c.model_type.c_str(), (long long)c.num_hidden_layers, (long long)moe_layers, (long long)c.hidden_size,
                (long long)c.num_attention_heads, (long long)c.vocab_size);
    std::printf("attention       MLA: q_lora_rank %lld, kv_lora_rank %lld, qk %lld+%lld (nope+rope), v %lld%s\n",
                (long long)c.q_lora_rank, (long long)c.kv_lora_rank, (long long)c.qk_nope_head_dim,
                (long long)c.qk_rope_head_dim, (long long)c.v_head_dim,
                c.rope_scaling ? ", YaRN" : "");
    if (c.n_routed_experts)
      std::printf("experts         %lld routed (%lld per token, %lld groups / top %lld, %s, %s) + %lld shared\n",
                  (long long)c.n_routed_experts, (long long)c.num_experts_per_tok, (long long)c.n_group,
                  (long long)c.topk_group, c.scoring_func.c_str(), c.topk_method.c_str(),
                  (long long)c.n_shared_experts);
    std::printf("parameters      %s total, %s active per token (%lld / %lld)\n", human(double(p.total)).c_str(),
                human(double(p.active)).c_str(), (long long)p.total, (long long)p.active);
    std::printf("MTP             %lld module(s) in config, %s params; weights %s\n",
                (long long)c.num_nextn_predict_layers, human(double(p.mtp)).c_str(),
                mtp_present ? "present" : "absent");
    std::printf("KV cache        %lld bytes per token (BF16 latent: %lld layers x (%lld + %lld) x 2)\n",
                (long long)p.kv_bytes_per_token_bf16, (long long)c.num_hidden_layers, (long long)c.kv_lora_rank,
                (long long)c.qk_rope_head_dim);
    if (weights_mapped) {
      std::printf("bytes by dtype ");
      for (const auto& [d, b] : bytes_by_dtype) std::printf(" %s %.1f MB", d.c_str(), double(b) / 1e6);
      std::printf("\n");
    } else {
      std::printf("weights         not present (config/index only)\n");
    }
    return 0;
  };
}

}  // namespace dsv3::cli
