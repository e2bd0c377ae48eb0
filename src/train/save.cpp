#include "train/save.h"

#include <fcntl.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors_writer.h"
#include "train/fp8.h"

namespace dsv3::train {

namespace fs = std::filesystem;

SaveDType parse_save_dtype(const std::string& s) {
  if (s == "f32") return SaveDType::F32;
  if (s == "bf16") return SaveDType::BF16;
  if (s == "fp8") return SaveDType::FP8;
  fail("unknown checkpoint dtype '", s, "' (f32, bf16, fp8)");
}

namespace {

constexpr char kStateMagic[8] = {'D', 'S', 'V', '3', 'S', 'T', 'A', '1'};

void write_text(const fs::path& path, const std::string& text) {
  write_file_atomic(path.string(), [&](std::FILE* f) { write_all(f, text.data(), text.size(), path.string()); });
}

DType stored_dtype(const ParamInfo& p, SaveDType d) {
  if (p.spec.kind == TensorKind::GateBias || d == SaveDType::F32) return DType::F32;
  if (d == SaveDType::FP8 && p.spec.kind == TensorKind::Linear) return DType::F8_E4M3;
  return DType::BF16;
}

// Swaps `tmp` into `dir` atomically (renameat2 RENAME_EXCHANGE when dir exists), with SIGINT
// and SIGTERM held back so no signal lands between the steps.
void swap_into_place(const fs::path& tmp, const fs::path& dir) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  if (fs::exists(dir)) {
    const int rc = renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE);
    if (rc != 0) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      fail(dir.string(), ": cannot swap in the new checkpoint: ", std::strerror(errno));
    }
    fs::remove_all(tmp);  // now the old checkpoint
  } else {
    fs::rename(tmp, dir);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

}  // namespace

void round_to_saved(Params<float>& p, SaveDType dtype) {
  for (const ParamInfo& info : p.table) {
    if (!info.stored) continue;
    float* d = p.data.data() + info.offset;
    const DType t = stored_dtype(info, dtype);
    if (t == DType::BF16)
      for (int64_t i = 0; i < info.numel; ++i) d[i] = bf16_to_f32(f32_to_bf16(d[i]));
    if (t == DType::F8_E4M3) fp8_quant_blocks(d, info.spec.shape[0], info.spec.shape[1], d, nullptr, nullptr);
  }
}

void save_checkpoint(const std::string& dir_s, const Params<float>& p, const AdamW& opt, const TrainState& st,
                     SaveDType dtype, const CheckpointFiles& files) {
  const fs::path dir(dir_s), tmp(dir_s + ".partial");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  DSV3_CHECK(!ec && fs::is_directory(tmp), tmp.string(), ": cannot create the checkpoint folder: ", ec.message());

  ModelConfig c = p.config;
  c.fp8 = dtype == SaveDType::FP8;
  c.weight_block_rows = c.weight_block_cols = kFp8Tile;

  // model.safetensors: every tensor of visit_tensors (aliases written as copies), FP8 weights
  // followed by their scale_inv.
  struct Item {
    const ParamInfo* info;
    bool scale;
    DType dtype;
    Shape shape;
  };
  std::vector<Item> items;
  for (const ParamInfo& info : p.table) {
    const DType t = stored_dtype(info, dtype);
    items.push_back({&info, false, t, info.spec.shape});
    if (t == DType::F8_E4M3)
      items.push_back({&info, true, DType::F32,
                       Shape{(info.spec.shape[0] + kFp8Tile - 1) / kFp8Tile, (info.spec.shape[1] + kFp8Tile - 1) / kFp8Tile}});
  }
  SafetensorsWriter w;
  nlohmann::ordered_json index;
  uint64_t total = 0;
  for (const Item& it : items) {
    const std::string name = it.info->spec.name + (it.scale ? "_scale_inv" : "");
    w.add(name, it.dtype, it.shape);
    index["weight_map"][name] = "model.safetensors";
    total += uint64_t(it.shape.numel()) * dtype_size(it.dtype);
  }
  index["metadata"] = {{"total_size", total}};
  w.write((tmp / "model.safetensors").string(), [&](size_t i, std::span<uint8_t> dst) {
    const Item& it = items[i];
    const ParamInfo& info = *it.info;
    const float* src = p.data.data() + info.offset;
    if (it.dtype == DType::F32 && !it.scale) {
      std::memcpy(dst.data(), src, size_t(info.numel) * 4);
    } else if (it.dtype == DType::BF16) {
      for (int64_t k = 0; k < info.numel; ++k) {
        const uint16_t b = f32_to_bf16(src[k]);
        std::memcpy(dst.data() + 2 * k, &b, 2);
      }
    } else {
      std::vector<uint8_t> codes(size_t(info.numel));
      std::vector<float> scales(size_t(it.scale ? it.shape.numel() : ((info.spec.shape[0] + kFp8Tile - 1) / kFp8Tile) *
                                                                         ((info.spec.shape[1] + kFp8Tile - 1) / kFp8Tile)));
      fp8_quant_blocks(src, info.spec.shape[0], info.spec.shape[1], nullptr, codes.data(), scales.data());
      if (it.scale)
        std::memcpy(dst.data(), scales.data(), scales.size() * 4);
      else
        std::memcpy(dst.data(), codes.data(), codes.size());
    }
  });
  write_text(tmp / "model.safetensors.index.json", index.dump(2) + "\n");
  nlohmann::ordered_json cj = c.to_json();
  cj["dsv3_trained"] = "trained by dsv3 train; see train_state.bin for the run's settings";
  write_text(tmp / "config.json", cj.dump(2) + "\n");
  if (!files.tokenizer_json.empty()) write_text(tmp / "tokenizer.json", files.tokenizer_json);
  if (!files.tokenizer_config_json.empty()) write_text(tmp / "tokenizer_config.json", files.tokenizer_config_json);
  if (!files.readme.empty()) write_text(tmp / "README.md", files.readme);

  // train_state.bin: magic, header length, JSON header, then params, m, v as float32.
  nlohmann::json hdr = {{"step", st.step},           {"seed", st.seed},        {"adam_t", opt.t},
                        {"n_params", p.data.size()}, {"options", st.options_json}};
  const std::string hs = hdr.dump();
  const fs::path sp = tmp / "train_state.bin";
  write_file_atomic(sp.string(), [&](std::FILE* f) {
    const uint64_t len = hs.size();
    write_all(f, kStateMagic, 8, sp.string());
    write_all(f, &len, 8, sp.string());
    write_all(f, hs.data(), hs.size(), sp.string());
    for (const auto* v : {&p.data, &opt.m, &opt.v}) write_all(f, v->data(), v->size() * 4, sp.string());
  });
  swap_into_place(tmp, dir);
}

void load_train_state(const std::string& dir, Params<float>& p, AdamW& opt, TrainState& st) {
  const std::string path = (fs::path(dir) / "train_state.bin").string();
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in, path, ": cannot open the training state (is this a checkpoint written by dsv3 train?)");
  char magic[8];
  uint64_t len = 0;
  DSV3_CHECK(in.read(magic, 8) && std::memcmp(magic, kStateMagic, 8) == 0 && in.read(reinterpret_cast<char*>(&len), 8) &&
                 len < (1u << 24),
             path, ": not a dsv3 training state file");
  std::string hs(len, '\0');
  DSV3_CHECK(in.read(hs.data(), std::streamsize(len)), path, ": truncated");
  const nlohmann::json hdr = nlohmann::json::parse(hs);
  DSV3_CHECK(hdr.at("n_params").get<size_t>() == p.data.size(), path, ": holds ", hdr.at("n_params").get<size_t>(),
             " parameters, the model has ", p.data.size());
  for (auto* v : {&p.data, &opt.m, &opt.v})
    DSV3_CHECK(in.read(reinterpret_cast<char*>(v->data()), std::streamsize(v->size() * 4)), path, ": truncated");
  st.step = hdr.at("step").get<int64_t>();
  st.seed = hdr.at("seed").get<uint64_t>();
  st.options_json = hdr.at("options").get<std::string>();
  opt.t = hdr.at("adam_t").get<int64_t>();
}

}  // namespace dsv3::train
