#include "model/convert.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/safetensors_writer.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kScaleSuffix = "_scale_inv";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  DSV3_CHECK(f.good(), p.string(), ": cannot open");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_text(const fs::path& p, const std::string& text) {
  write_file_atomic(p.string(), [&](std::FILE* f) { write_all(f, text.data(), text.size(), p.string()); });
}

// One output tensor: where it comes from and what it becomes.
struct Item {
  std::string name;
  TensorView src;
  std::optional<TensorView> scale;  // set for F8_E4M3 weights, which become BF16
  DType dtype() const { return scale ? DType::BF16 : src.dtype; }
  uint64_t out_bytes() const { return uint64_t(src.numel()) * dtype_size(dtype()); }
};

// bf16(fp8(w) * scale) per element, the float32 product rounded to nearest even, as
// fp8_cast_bf16.py's weight_dequant (Triton: x.to(float32) * s, stored to a bf16 tensor).
void dequant_fp8_to_bf16(const TensorView& w, const TensorView& scale, int64_t block_rows, int64_t block_cols,
                         std::span<uint8_t> dst) {
  const int64_t rows = w.shape[0], cols = w.shape[1], scale_cols = scale.shape[1];
  const uint8_t* codes = w.as<uint8_t>();
  const auto* scales = static_cast<const uint8_t*>(scale.data);  // F32, possibly unaligned in the file
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* srow = scales + size_t((r / block_rows) * scale_cols) * 4;
    uint8_t* out = dst.data() + size_t(r * cols) * 2;
    for (int64_t c0 = 0; c0 < cols; c0 += block_cols) {
      float s;
      std::memcpy(&s, srow + size_t(c0 / block_cols) * 4, 4);
      const int64_t c1 = std::min(c0 + block_cols, cols);
      for (int64_t c = c0; c < c1; ++c) {
        const uint16_t b = f32_to_bf16(fp8e4m3_to_f32(codes[r * cols + c]) * s);
        std::memcpy(out + 2 * c, &b, 2);
      }
    }
  }
}

void check_output_folder(const fs::path& in, const fs::path& out, bool force) {
  // Replacing the output must never touch the input: out may be neither it nor a folder above it.
  const fs::path in_c = fs::weakly_canonical(in), out_c = fs::weakly_canonical(out);
  const auto mismatch = std::mismatch(out_c.begin(), out_c.end(), in_c.begin(), in_c.end());
  DSV3_CHECK(mismatch.first != out_c.end(), out.string(),
             ": is the input checkpoint folder or a folder above it (write elsewhere)");
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  DSV3_CHECK(fs::is_directory(out), out.string(), ": exists and is not a folder");
  DSV3_CHECK(force || fs::is_empty(out), out.string(), ": folder exists and is not empty (use --force to replace it)");
}

}  // namespace

ConvertStats convert_checkpoint_to_bf16(const ConvertOptions& opt) {
  const fs::path in(opt.model_dir), out(opt.out_dir);
  DSV3_CHECK(!opt.out_dir.empty(), "convert: no output folder given");
  DSV3_CHECK(fs::is_directory(in), opt.model_dir, ": not a checkpoint folder (not a directory)");
  const fs::path config_path = in / "config.json";
  DSV3_CHECK(fs::exists(config_path), opt.model_dir, ": no config.json");
  const std::string config_text = read_text(config_path);
  nlohmann::ordered_json config_json;
  try {
    config_json = nlohmann::ordered_json::parse(config_text);
  } catch (const nlohmann::json::exception& e) {
    fail(config_path.string(), ": malformed JSON: ", e.what());
  }
  // Validates the config as dsv3 reads it (and gives the FP8 block size).
  const ModelConfig config = ModelConfig::from_json(nlohmann::json::parse(config_text), config_path.string());
  check_output_folder(in, out, opt.force);

  const Checkpoint ck = Checkpoint::open(opt.model_dir);
  const bool had_index = fs::exists(in / kIndexName);

  // Output shards: the input's, in file order; tensors in each file's header order.
  std::set<const SafetensorsFile*> seen;
  std::vector<const SafetensorsFile*> files;
  for (const auto& [name, loc] : ck.tensors())
    if (seen.insert(loc.file).second) files.push_back(loc.file);
  std::sort(files.begin(), files.end(), [](auto* a, auto* b) { return a->path() < b->path(); });

  ConvertStats st;
  std::vector<std::vector<Item>> shards;
  for (const SafetensorsFile* file : files) {
    auto& items = shards.emplace_back();
    for (const SafetensorsEntry& e : file->entries()) {
      const TensorView v = file->view(e);
      st.bytes_in += v.nbytes();
      if (ends_with(e.name, kScaleSuffix)) {  // fp8_cast_bf16.py drops every scale tensor
        ++st.scales_dropped;
        continue;
      }
      Item it{e.name, v, std::nullopt};
      if (e.dtype == DType::F8_E4M3) {
        const std::string scale_name = e.name + kScaleSuffix, where = file->path() + ": tensor '" + e.name + "'";
        DSV3_CHECK(e.shape.rank == 2, where, ": F8_E4M3 tensor of shape ", e.shape.str(), " (expected a 2-D weight)");
        DSV3_CHECK(ck.has(scale_name), where, ": FP8 weight without its block scales '", scale_name, "'");
        const TensorView sc = ck.get(scale_name);
        const int64_t br = config.weight_block_rows, bc = config.weight_block_cols;
        const Shape want{(e.shape[0] + br - 1) / br, (e.shape[1] + bc - 1) / bc};
        DSV3_CHECK(sc.dtype == DType::F32 && sc.shape == want, ck.file_of(scale_name), ": tensor '", scale_name,
                   "': ", dtype_name(sc.dtype), " ", sc.shape.str(), ", expected F32 ", want.str(), " for ",
                   e.shape.str(), " in ", br, "x", bc, " blocks");
        it.scale = sc;
      }
      items.push_back(it);
    }
  }

  const fs::path tmp = out.string() + ".partial";
  try {
    fs::remove_all(tmp);
    fs::create_directories(tmp);
  } catch (const fs::filesystem_error& e) {
    fail(out.string(), ": cannot create the output folder (", e.code().message(), ")");
  }
  try {
    uint64_t total = 0;
    for (const auto& items : shards)
      for (const Item& it : items) total += it.out_bytes();
    std::optional<Progress> progress;
    if (opt.progress) progress.emplace("convert " + out.filename().string(), total, "B");

    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string fname = fs::path(files[s]->path()).filename().string();
      SafetensorsWriter w;
      for (const Item& it : shards[s]) {
        w.add(it.name, it.dtype(), it.src.shape);
        weight_map[it.name] = fname;
      }
      w.write((tmp / fname).string(), [&](size_t k, std::span<uint8_t> dst) {
        const Item& it = shards[s][k];
        if (it.scale) {
          dequant_fp8_to_bf16(it.src, *it.scale, config.weight_block_rows, config.weight_block_cols, dst);
          ++st.dequantized;
        } else {
          std::memcpy(dst.data(), it.src.data, dst.size());
          ++st.copied;
        }
        st.bytes_out += dst.size();
        if (progress) progress->advance(dst.size());
      });
    }
    if (progress) progress->finish();

    if (had_index) {
      nlohmann::ordered_json index;
      index["metadata"] = {{"total_size", total}};
      index["weight_map"] = weight_map;
      write_text(tmp / kIndexName, index.dump(2) + "\n");
    }
    config_json.erase("quantization_config");
    write_text(tmp / "config.json", config_json.dump(2) + "\n");

    for (const auto& entry : fs::directory_iterator(in)) {
      const std::string name = entry.path().filename().string();
      if (!entry.is_regular_file() || name == "config.json" || name == kIndexName ||
          entry.path().extension() == ".safetensors")
        continue;
      fs::copy_file(entry.path(), tmp / name);
      ++st.files_copied;
    }

    replace_folder(tmp.string(), out.string());
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fail(out.string(), ": ", e.what());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return st;
}

}  // namespace dsv3
