#include "cli/bench_layers.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"

namespace dsv3::cli {

namespace {

double ms_per(double seconds, int64_t rows) { return rows > 0 ? 1e3 * seconds / double(rows) : 0.0; }

// GB/s of `bytes` read in `ms` milliseconds (0 where nothing was timed).
double gb_s(double bytes, double ms) { return ms > 0 ? bytes / (ms * 1e-3) / 1e9 : 0.0; }

double sum_of(const nlohmann::ordered_json& layers, const char* key) {
  double s = 0;
  for (const auto& l : layers) s += l[key].get<double>();
  return s;
}

// The GB/s of a layer's (or a kind's) attention and FFN halves, from its bytes and decode times.
void add_halves_bandwidth(nlohmann::ordered_json& e, double bandwidth) {
  const double attn = gb_s(e["attention_weight_bytes_per_token"].get<double>() + e["cache_bytes_per_token"].get<double>(),
                           e["decode_attention_ms_per_token"].get<double>());
  const double ffn = gb_s(e["ffn_weight_bytes_per_token"].get<double>(), e["decode_ffn_ms_per_token"].get<double>());
  e["decode_attention_gb_s"] = attn;
  e["decode_attention_bandwidth_share"] = attn * 1e9 / bandwidth;
  e["decode_ffn_gb_s"] = ffn;
  e["decode_ffn_bandwidth_share"] = ffn * 1e9 / bandwidth;
}

const nlohmann::ordered_json* kind_of(const nlohmann::ordered_json& j, const std::string& kind) {
  for (const auto& k : j["layer_kinds"])
    if (k["kind"] == kind) return &k;
  return nullptr;
}

}  // namespace

void add_layer_times(nlohmann::ordered_json& r, const ModelConfig& c, const ModelWeights& w, const StepWeightBytes& wb,
                     double cache_bytes, double bandwidth, const StepTimes& prefill, const StepTimes& decode) {
  const double cache_per_layer = cache_bytes / double(std::max<int64_t>(1, c.num_hidden_layers));
  r["layers"] = nlohmann::ordered_json::array();
  for (size_t l = 0; l < w.layers.size(); ++l) {
    nlohmann::ordered_json e;
    e["index"] = l;
    e["kind"] = w.layers[l].is_moe ? "moe" : "dense";
    e["prefill_ms_per_token"] = ms_per(l < prefill.layer.size() ? prefill.layer[l] : 0.0, prefill.rows);
    const double ms = ms_per(l < decode.layer.size() ? decode.layer[l] : 0.0, decode.rows);
    e["decode_ms_per_token"] = ms;
    const double weight = wb.layer_decode(l, c.num_experts_per_tok);
    e["weight_bytes_per_token"] = weight;
    e["cache_bytes_per_token"] = cache_per_layer;
    e["decode_gb_s"] = gb_s(weight + cache_per_layer, ms);
    e["decode_bandwidth_share"] = gb_s(weight + cache_per_layer, ms) * 1e9 / bandwidth;
    // Its two halves: attention (attn_norm, MLA and the cache) and the FFN (ffn_norm, the MLP or
    // the router with its shared and routed experts).
    const double pre_attn = ms_per(l < prefill.attention.size() ? prefill.attention[l] : 0.0, prefill.rows);
    const double attn = ms_per(l < decode.attention.size() ? decode.attention[l] : 0.0, decode.rows);
    e["prefill_attention_ms_per_token"] = pre_attn;
    e["prefill_ffn_ms_per_token"] = e["prefill_ms_per_token"].get<double>() - pre_attn;
    e["decode_attention_ms_per_token"] = attn;
    e["decode_ffn_ms_per_token"] = ms - attn;
    e["attention_weight_bytes_per_token"] = wb.attention[l];
    e["ffn_weight_bytes_per_token"] = weight - wb.attention[l];
    add_halves_bandwidth(e, bandwidth);
    r["layers"].push_back(e);
  }
  r["prefill_step_ms_per_token"] = ms_per(prefill.step, prefill.rows);
  r["prefill_embed_ms_per_token"] = ms_per(prefill.embed, prefill.rows);
  r["prefill_head_ms_per_token"] = ms_per(prefill.head, prefill.rows);  // lm_head of the last row only
  r["decode_step_ms_per_token"] = ms_per(decode.step, decode.rows);
  r["decode_embed_ms_per_token"] = ms_per(decode.embed, decode.rows);
  const double head_ms = ms_per(decode.head, decode.rows);
  r["decode_head_ms_per_token"] = head_ms;
  r["head_weight_bytes_per_token"] = wb.head;
  r["embed_weight_bytes_per_token"] = wb.embed_row;
  r["decode_head_gb_s"] = gb_s(wb.head, head_ms);
  r["decode_head_bandwidth_share"] = gb_s(wb.head, head_ms) * 1e9 / bandwidth;
}

void check_projectable(const ModelConfig& c, const ModelConfig& p, const std::string& path) {
  DSV3_CHECK(p.hidden_size == c.hidden_size && p.vocab_size == c.vocab_size &&
                 p.num_attention_heads == c.num_attention_heads && p.q_lora_rank == c.q_lora_rank &&
                 p.kv_lora_rank == c.kv_lora_rank && p.qk_nope_head_dim == c.qk_nope_head_dim &&
                 p.qk_rope_head_dim == c.qk_rope_head_dim && p.v_head_dim == c.v_head_dim &&
                 p.intermediate_size == c.intermediate_size && p.moe_intermediate_size == c.moe_intermediate_size &&
                 p.n_routed_experts == c.n_routed_experts && p.n_shared_experts == c.n_shared_experts &&
                 p.num_experts_per_tok == c.num_experts_per_tok,
             "--project ", path, ": its layers' shapes differ from the measured model's (hidden_size, vocab_size, ",
             "attention, MLP and expert sizes must be equal): nothing to project from");
  auto has = [](const ModelConfig& m, bool moe) {
    for (int64_t l = 0; l < m.num_hidden_layers; ++l)
      if (m.is_moe_layer(l) == moe) return true;
    return false;
  };
  for (const bool moe : {false, true})
    DSV3_CHECK(!has(p, moe) || has(c, moe), "--project ", path, ": it has ", moe ? "MoE" : "dense",
               " layers and the measured model none to project them from");
}

void summarise_layer_times(nlohmann::ordered_json& j, const ModelConfig& c, const std::optional<ModelConfig>& project,
                           const std::string& project_path) {
  const double bw = j["bandwidth_gb_s"].get<double>() * 1e9;
  j["layer_kinds"] = nlohmann::ordered_json::array();
  for (const char* kind : {"dense", "moe"}) {
    nlohmann::ordered_json k;
    int64_t n = 0;
    for (const char* key : {"prefill_ms_per_token", "decode_ms_per_token", "weight_bytes_per_token", "cache_bytes_per_token",
                            "prefill_attention_ms_per_token", "prefill_ffn_ms_per_token", "decode_attention_ms_per_token",
                            "decode_ffn_ms_per_token", "attention_weight_bytes_per_token", "ffn_weight_bytes_per_token"})
      k[key] = 0.0;
    for (const auto& l : j["layers"]) {
      if (l["kind"] != kind) continue;
      ++n;
      for (auto& [key, v] : k.items()) v = v.get<double>() + l[key].get<double>();
    }
    if (n == 0) continue;
    for (auto& [key, v] : k.items()) v = v.get<double>() / double(n);
    nlohmann::ordered_json out;
    out["kind"] = kind;
    out["layers"] = n;
    out.update(k);
    const double bytes = k["weight_bytes_per_token"].get<double>() + k["cache_bytes_per_token"].get<double>();
    out["decode_gb_s"] = gb_s(bytes, k["decode_ms_per_token"].get<double>());
    out["decode_bandwidth_share"] = out["decode_gb_s"].get<double>() * 1e9 / bw;
    add_halves_bandwidth(out, bw);
    j["layer_kinds"].push_back(out);
  }
  if (!project) return;
  const ModelConfig& p = *project;
  int64_t dense = 0, moe = 0;
  for (int64_t l = 0; l < p.num_hidden_layers; ++l) (p.is_moe_layer(l) ? moe : dense)++;
  const nlohmann::ordered_json *d = kind_of(j, "dense"), *m = kind_of(j, "moe");
  DSV3_ASSERT((dense == 0 || d) && (moe == 0 || m));  // check_projectable
  // Each phase's step per token with the measured layers replaced by the projected ones.
  auto projected = [&](const char* phase) {
    const std::string key = std::string(phase) + "_ms_per_token";
    double ms = j[std::string(phase) + "_step_ms_per_token"].get<double>() - sum_of(j["layers"], key.c_str());
    if (dense) ms += double(dense) * (*d)[key].get<double>();
    if (moe) ms += double(moe) * (*m)[key].get<double>();
    return ms;
  };
  double weight = j["head_weight_bytes_per_token"].get<double>() + j["embed_weight_bytes_per_token"].get<double>();
  if (dense) weight += double(dense) * (*d)["weight_bytes_per_token"].get<double>();
  if (moe) weight += double(moe) * (*m)["weight_bytes_per_token"].get<double>();
  const double cache = double(p.num_hidden_layers) * j["layers"][0]["cache_bytes_per_token"].get<double>();
  nlohmann::ordered_json out;
  out["config"] = project_path;
  out["num_hidden_layers"] = p.num_hidden_layers;
  out["dense_layers"] = dense;
  out["moe_layers"] = moe;
  out["prefill_ms_per_token"] = projected("prefill");
  out["prefill_tokens_per_s"] = 1e3 / projected("prefill");
  const double decode_ms = projected("decode");
  out["decode_ms_per_token"] = decode_ms;
  out["decode_tokens_per_s"] = 1e3 / decode_ms;
  out["weight_bytes_per_token"] = weight;
  out["cache_bytes_per_token"] = cache;
  // Decode time scales with the bandwidth where it is memory-bound: the projected rate at this
  // run's share of the bandwidth, per 100 GB/s, and the bound of reading the bytes at 100 GB/s.
  out["decode_tokens_per_s_per_100gb_s"] = 1e3 / decode_ms * 100e9 / bw;
  out["decode_bound_tokens_per_s_per_100gb_s"] = 100e9 / (weight + cache);
  j["projection"] = out;
}

void print_layer_times(const nlohmann::ordered_json& j) {
  const double pct = 100;
  const auto& layers = j["layers"];
  std::printf("layers           per token: prefill ms | decode ms, and the weights a decoded token reads in it "
              "(+ cache) at the GB/s its decode time makes, share of read bandwidth\n");
  auto line = [&](const std::string& name, double prefill_ms, double decode_ms, double weight, double cache, double gbs,
                  double share) {
    std::printf("  %-16s %9.3f | %9.3f ms  %9.1f MB (+%.2f) %7.2f GB/s %4.0f%%\n", name.c_str(), prefill_ms, decode_ms,
                weight / 1e6, cache / 1e6, gbs, pct * share);
  };
  // Every layer while they fit a screen; the kinds' means always.
  constexpr size_t kMaxListed = 16;
  if (layers.size() <= kMaxListed)
    for (const auto& l : layers)
      line(std::to_string(l["index"].get<int64_t>()) + " " + l["kind"].get<std::string>(),
           l["prefill_ms_per_token"].get<double>(), l["decode_ms_per_token"].get<double>(),
           l["weight_bytes_per_token"].get<double>(), l["cache_bytes_per_token"].get<double>(),
           l["decode_gb_s"].get<double>(), l["decode_bandwidth_share"].get<double>());
  else
    std::printf("  (%zu layers: --json lists each one)\n", layers.size());
  for (const auto& k : j["layer_kinds"]) {
    line(k["kind"].get<std::string>() + " mean of " + std::to_string(k["layers"].get<int64_t>()),
         k["prefill_ms_per_token"].get<double>(), k["decode_ms_per_token"].get<double>(),
         k["weight_bytes_per_token"].get<double>(), k["cache_bytes_per_token"].get<double>(),
         k["decode_gb_s"].get<double>(), k["decode_bandwidth_share"].get<double>());
    line("  attention", k["prefill_attention_ms_per_token"].get<double>(), k["decode_attention_ms_per_token"].get<double>(),
         k["attention_weight_bytes_per_token"].get<double>(), k["cache_bytes_per_token"].get<double>(),
         k["decode_attention_gb_s"].get<double>(), k["decode_attention_bandwidth_share"].get<double>());
    line(k["kind"] == "moe" ? "  moe ffn" : "  mlp", k["prefill_ffn_ms_per_token"].get<double>(),
         k["decode_ffn_ms_per_token"].get<double>(), k["ffn_weight_bytes_per_token"].get<double>(), 0,
         k["decode_ffn_gb_s"].get<double>(), k["decode_ffn_bandwidth_share"].get<double>());
  }
  std::printf("  %-16s %9.3f | %9.3f ms\n", "embedding", j["prefill_embed_ms_per_token"].get<double>(),
              j["decode_embed_ms_per_token"].get<double>());
  line("norm + lm_head", j["prefill_head_ms_per_token"].get<double>(), j["decode_head_ms_per_token"].get<double>(),
       j["head_weight_bytes_per_token"].get<double>(), 0, j["decode_head_gb_s"].get<double>(),
       j["decode_head_bandwidth_share"].get<double>());
  const double pre = j["prefill_step_ms_per_token"].get<double>(), dec = j["decode_step_ms_per_token"].get<double>();
  std::printf("  %-16s %9.3f | %9.3f ms  (of which outside the parts above: %.3f | %.3f ms; lm_head runs for a "
              "prompt's last token only)\n",
              "whole step", pre, dec,
              pre - sum_of(layers, "prefill_ms_per_token") - j["prefill_embed_ms_per_token"].get<double>() -
                  j["prefill_head_ms_per_token"].get<double>(),
              dec - sum_of(layers, "decode_ms_per_token") - j["decode_embed_ms_per_token"].get<double>() -
                  j["decode_head_ms_per_token"].get<double>());
  if (j.contains("spec_mtp_ms_per_token"))
    std::printf("  %-16s %9s | %9.3f ms per drafted token (the MTP module, speculative run)\n", "mtp", "",
                j["spec_mtp_ms_per_token"].get<double>());
  if (!j.contains("projection")) return;
  const auto& p = j["projection"];
  auto bytes = [](double b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, b >= 1e9 ? "%.2f GB" : "%.1f MB", b >= 1e9 ? b / 1e9 : b / 1e6);
    return std::string(buf);
  };
  std::printf("projection       %s: %lld layers (%lld dense + %lld MoE) from the mean dense and MoE layer: decode "
              "%.1f ms per token = %.3g tok/s, reading %s (+%s cache) = %.3g tok/s per 100 GB/s at this run's "
              "bandwidth share (bound %.3g); prefill %.3g tok/s\n",
              p["config"].get<std::string>().c_str(), (long long)p["num_hidden_layers"].get<int64_t>(),
              (long long)p["dense_layers"].get<int64_t>(), (long long)p["moe_layers"].get<int64_t>(),
              p["decode_ms_per_token"].get<double>(), p["decode_tokens_per_s"].get<double>(),
              bytes(p["weight_bytes_per_token"].get<double>()).c_str(),
              bytes(p["cache_bytes_per_token"].get<double>()).c_str(), p["decode_tokens_per_s_per_100gb_s"].get<double>(),
              p["decode_bound_tokens_per_s_per_100gb_s"].get<double>(), p["prefill_tokens_per_s"].get<double>());
}

}  // namespace dsv3::cli
