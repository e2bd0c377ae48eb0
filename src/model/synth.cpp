#include "model/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "io/safetensors_writer.h"
#include "model/weights.h"

namespace dsv3 {

namespace fs = std::filesystem;

ModelConfig deepseek_v3_defaults() {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.rope_theta = 10000;
  c.rms_norm_eps = 1e-6;
  c.bos_token_id = 0;
  c.eos_token_ids = {1};
  c.num_nextn_predict_layers = 1;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 1;
  c.n_shared_experts = 1;
  c.max_position_embeddings = 4096;
  return c;
}

ModelConfig synth_preset(const std::string& name) {
  ModelConfig c = deepseek_v3_defaults();
  c.fp8 = true;
  // YaRN as in DeepSeek-V3: 4K pre-training context extended 40x.
  c.rope_scaling = RopeScaling{40.0, 4096, 32.0, 1.0, 1.0, 1.0};
  c.max_position_embeddings = 163840;
  if (name == "tiny") {  // the golden cases' shapes
    c.vocab_size = 1024; c.hidden_size = 256; c.intermediate_size = 384; c.moe_intermediate_size = 64;
    c.num_hidden_layers = 3; c.num_attention_heads = 4; c.n_routed_experts = 16; c.num_experts_per_tok = 4;
    c.n_group = 4; c.topk_group = 2; c.q_lora_rank = 96; c.kv_lora_rank = 64;
    c.qk_nope_head_dim = 32; c.qk_rope_head_dim = 16; c.v_head_dim = 32;
  } else if (name == "small") {  // ~0.8B parameters, ~0.8 GB in FP8
    c.vocab_size = 32000; c.hidden_size = 1024; c.intermediate_size = 2816; c.moe_intermediate_size = 512;
    c.num_hidden_layers = 8; c.num_attention_heads = 16; c.n_routed_experts = 64; c.num_experts_per_tok = 6;
    c.n_group = 8; c.topk_group = 4; c.q_lora_rank = 384; c.kv_lora_rank = 256;
    c.qk_nope_head_dim = 64; c.qk_rope_head_dim = 32; c.v_head_dim = 64;
  } else if (name == "medium") {  // ~2B total, V3's head dims, many experts and few active
    c.vocab_size = 32000; c.hidden_size = 2048; c.intermediate_size = 5632; c.moe_intermediate_size = 384;
    c.num_hidden_layers = 12; c.num_attention_heads = 16; c.n_routed_experts = 64; c.num_experts_per_tok = 6;
    c.n_group = 8; c.topk_group = 4; c.q_lora_rank = 768; c.kv_lora_rank = 512;
    c.qk_nope_head_dim = 128; c.qk_rope_head_dim = 64; c.v_head_dim = 128;
  } else {
    fail("unknown synth preset '", name, "' (tiny, small, medium)");
  }
  return c;
}

ModelConfig cut_layers(ModelConfig c, int64_t layers) {
  DSV3_CHECK(layers >= 1, "synth: --layers must be at least 1, got ", layers);
  c.num_hidden_layers = layers;
  if (c.n_routed_experts > 0 && layers > 1) c.first_k_dense_replace = std::min(c.first_k_dense_replace, layers - 1);
  return c;
}

namespace {

// splitmix64: tiny, fast, and good enough for random weights.
struct Rng {
  static constexpr uint64_t kIncrement = 0x9e3779b97f4a7c15ull;
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += kIncrement);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(next() >> 40) / float(1 << 24); }
};

uint64_t hash_name(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// Standard normal samples drawn once; elements pick from it at random (fast, and plenty for
// random weights).
const std::vector<float>& normal_table() {
  static const std::vector<float> t = [] {
    std::vector<float> v(1 << 16);
    Rng r{12345};
    for (size_t i = 0; i < v.size(); i += 2) {
      const double u1 = (double(r.next() >> 11) + 1.0) / 9007199254740993.0, u2 = double(r.next() >> 11) / 9007199254740992.0;
      const double m = std::sqrt(-2.0 * std::log(u1));
      v[i] = float(m * std::cos(2 * M_PI * u2));
      v[i + 1] = float(m * std::sin(2 * M_PI * u2));
    }
    return v;
  }();
  return t;
}

// FP8 codes of N(0, 1) * kFp8Sigma: 4 sigma reach the e4m3 maximum of 448.
constexpr float kFp8Sigma = kFp8E4M3Max / 4;
const std::vector<uint8_t>& fp8_code_table() {
  static const std::vector<uint8_t> t = [] {
    const auto& n = normal_table();
    std::vector<uint8_t> v(n.size());
    for (size_t i = 0; i < n.size(); ++i) v[i] = f32_to_fp8e4m3(n[i] * kFp8Sigma);
    return v;
  }();
  return t;
}

// Tensors that are copies in the released checkpoints get the same data as their originals.
std::string seed_name(const TensorSpec& s) {
  if (s.mtp && s.kind == TensorKind::Embedding) return "model.embed_tokens.weight";
  if (s.mtp && s.kind == TensorKind::Head) return "lm_head.weight";
  return s.name;
}

struct Item {  // one tensor to write: a weight or the block scales of an FP8 weight
  TensorSpec spec;
  bool scale = false;
  DType dtype;
  Shape shape;
  uint64_t bytes() const { return uint64_t(shape.numel()) * dtype_size(dtype); }
};

float sigma_of(const TensorSpec& s) {
  switch (s.kind) {
    case TensorKind::Embedding: return 1.0f;
    case TensorKind::Linear: case TensorKind::Gate: case TensorKind::Head:
      return 1.0f / std::sqrt(float(s.shape.rank == 2 ? s.shape[1] : s.shape[0]));
    default: return 0.0f;
  }
}

// Bytes [offset, offset + dst.size()) of the item, whole elements. Every element takes exactly
// one draw from the item's generator (norms none), so a chunk starts the generator where the
// elements before it left it: splitmix64's state after e draws is its seed + e x its increment.
void fill_item(const Item& it, uint64_t seed, uint64_t offset, std::span<uint8_t> dst) {
  const uint64_t first = offset / dtype_size(it.dtype);
  Rng rng{hash_name(seed_name(it.spec) + (it.scale ? "#scale" : ""), seed) + first * Rng::kIncrement};
  const auto& normal = normal_table();
  const int64_t n = int64_t(dst.size() / dtype_size(it.dtype));
  if (it.scale) {  // scale_inv: sigma / kFp8Sigma with a per-block gain in [0.6, 1.4]
    const float base = sigma_of(it.spec) / kFp8Sigma;
    for (int64_t i = 0; i < n; ++i) {
      const float v = base * (0.6f + 0.8f * rng.uniform());
      std::memcpy(dst.data() + 4 * i, &v, 4);
    }
    return;
  }
  switch (it.dtype) {
    case DType::F8_E4M3: {
      const auto& codes = fp8_code_table();
      for (int64_t i = 0; i < n; ++i) dst[size_t(i)] = codes[rng.next() & 0xffff];
      return;
    }
    case DType::F32: {  // e_score_correction_bias
      for (int64_t i = 0; i < n; ++i) {
        const float v = 0.1f * (rng.uniform() - 0.5f);
        std::memcpy(dst.data() + 4 * i, &v, 4);
      }
      return;
    }
    case DType::BF16: {
      const bool norm = it.spec.kind == TensorKind::Norm;
      const float sigma = sigma_of(it.spec);
      for (int64_t i = 0; i < n; ++i) {
        const float v = norm ? 1.0f : normal[rng.next() & 0xffff] * sigma;
        const uint16_t b = f32_to_bf16(v);
        std::memcpy(dst.data() + 2 * i, &b, 2);
      }
      return;
    }
    default:
      fail("synth: unexpected dtype");
  }
}

}  // namespace

void write_synthetic_checkpoint(const ModelConfig& cfg, const SynthOptions& opt) {
  ModelConfig c = cfg;
  c.fp8 = opt.fp8;
  if (!opt.tokenizer_dir.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      DSV3_CHECK(fs::exists(fs::path(opt.tokenizer_dir) / f), opt.tokenizer_dir, ": no ", f,
                 " (run scripts/setup, which fetches DeepSeek-V3's tokenizer)");
    c.vocab_size = 129280;  // DeepSeek-V3's embedding rows (the tokenizer uses 128815 of them)
    c.bos_token_id = 0;
    c.eos_token_ids = {1};
  }
  const fs::path out(opt.out_dir);
  if (fs::exists(out)) {
    DSV3_CHECK(fs::is_directory(out), out.string(), ": exists and is not a folder");
    DSV3_CHECK(opt.force || fs::is_empty(out), out.string(),
               ": folder exists and is not empty (use --force to replace it)");
  }
  const fs::path tmp = out.string() + ".partial";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  auto fail_cleanly = [&](auto&&... msg) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fail(msg...);
  };

  // Items in visiting order, cut into shards of at most shard_bytes.
  std::vector<Item> items;
  visit_tensors(c, /*include_mtp=*/true, nullptr, [&](const TensorSpec& s) {
    Item it{s, false, DType::BF16, s.shape};
    if (s.kind == TensorKind::GateBias) it.dtype = DType::F32;
    if (s.kind == TensorKind::Linear && c.fp8) it.dtype = DType::F8_E4M3;
    items.push_back(it);
    if (it.dtype == DType::F8_E4M3) {
      const int64_t rows = s.shape[0], cols = s.shape[1];
      items.push_back(Item{s, true, DType::F32,
                           Shape{(rows + c.weight_block_rows - 1) / c.weight_block_rows,
                                 (cols + c.weight_block_cols - 1) / c.weight_block_cols}});
    }
  });
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_size = 0, total = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const bool starts_pair = !items[i].scale;
    if (starts_pair && shard_size > 0 && shard_size + items[i].bytes() > opt.shard_bytes) {
      shards.emplace_back();
      shard_size = 0;
    }
    shards.back().push_back(i);
    shard_size += items[i].bytes();
    total += items[i].bytes();
  }
  // DeepSeek-V3's own config is ~680 GB in FP8: say so before writing any of it.
  std::error_code ec;
  const fs::space_info space = fs::space(tmp, ec);
  if (!ec && space.available < total + (uint64_t(64) << 20))
    fail_cleanly("synth: the checkpoint needs ", total / 1e9, " GB but ", out.parent_path().string().empty() ? "." : out.parent_path().string(),
                 " has ", space.available / 1e9, " GB free (fewer layers: --layers N)");

  auto item_name = [&](const Item& it) { return it.spec.name + (it.scale ? "_scale_inv" : ""); };
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  std::optional<Progress> progress;
  if (opt.progress) progress.emplace("synth " + out.filename().string(), total, "B");
  char fname[64];
  for (size_t s = 0; s < shards.size(); ++s) {
    std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    SafetensorsWriter w;
    for (size_t i : shards[s]) {
      w.add(item_name(items[i]), items[i].dtype, items[i].shape);
      index["weight_map"][item_name(items[i])] = fname;
    }
    w.write_chunked((tmp / fname).string(), [&](size_t k, uint64_t offset, std::span<uint8_t> dst) {
      fill_item(items[shards[s][k]], opt.seed, offset, dst);
      if (progress) progress->advance(dst.size());
    }, {{"format", "pt"}}, opt.chunk_bytes);
  }
  if (progress) progress->finish();

  nlohmann::ordered_json cj = c.to_json();
  cj["dsv3_synthetic"] = "random weights written by dsv3 synth; outputs are meaningless";
  const std::string cfg_text = cj.dump(2) + "\n", index_text = index.dump(2) + "\n";
  write_file_atomic((tmp / "config.json").string(), [&](std::FILE* f) {
    write_all(f, cfg_text.data(), cfg_text.size(), "config.json");
  });
  write_file_atomic((tmp / "model.safetensors.index.json").string(), [&](std::FILE* f) {
    write_all(f, index_text.data(), index_text.size(), "model.safetensors.index.json");
  });
  write_file_atomic((tmp / "README.md").string(), [&](std::FILE* f) {
    const std::string t =
        "# Synthetic DeepSeek-V3-architecture checkpoint (RANDOM WEIGHTS)\n\n"
        "Written by `dsv3 synth`. The weights are random: the model has learned nothing and its\n"
        "output is meaningless. It exists to test and benchmark dsv3 on the real on-disk format.\n";
    write_all(f, t.data(), t.size(), "README.md");
  });

  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    if (!opt.tokenizer_dir.empty()) fs::copy_file(fs::path(opt.tokenizer_dir) / f, tmp / f);

  replace_folder(tmp.string(), out.string());
}

}  // namespace dsv3
