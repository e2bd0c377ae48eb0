#include "model/quantize.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/ggml_blocks.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/gguf_model_metadata.h"
#include "io/gguf_tensor_names.h"
#include "io/gguf_tokenizer.h"
#include "io/gguf_writer.h"
#include "model/weights.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

// Values decoded to float32 at a time: 16 MiB, so that memory stays bounded whatever the
// tensor (V3's embedding alone is 3.7 GB in float32) while each chunk still has rows enough
// for every thread.
constexpr int64_t kChunkValues = int64_t(4) << 20;

// A checkpoint weight as stored: [rows, cols] (1-D tensors are one row), FP8 with its scales.
struct Source {
  TensorView w;
  const uint8_t* scale = nullptr;  // F32 [ceil(rows / br), ceil(cols / bc)], maybe unaligned
  int64_t rows = 0, cols = 0, scale_cols = 0, br = 128, bc = 128;
};

// A run of output rows from one source: its rows [row0, row0 + nrows) as they are, or, with
// `transpose`, the columns of those rows (each output row is one column, nrows long).
struct Piece {
  Source src;
  int64_t row0 = 0, nrows = 0;
  bool transpose = false;
  int64_t out_rows() const { return transpose ? src.cols : nrows; }
  int64_t out_row_len() const { return transpose ? nrows : src.cols; }
};

struct Planned {
  std::string name;  // GGUF
  Shape shape;       // PyTorch order
  DType type;
  std::vector<Piece> pieces;
  bool routed = false;  // a stacked routed-expert tensor (for the size label)
  int64_t row() const { return shape[shape.rank - 1]; }
  uint64_t bytes() const { return uint64_t(shape.numel() / row()) * dtype_row_bytes(type, row()); }
};

// Rows [r0, r0 + n) of `s` in float32: FP8 times its block scale (the float32 product, as the
// FP8 model computes it, not rounded to BF16), BF16 / F16 / F32 widened.
void decode_rows(const Source& s, int64_t r0, int64_t n, float* out) {
  const auto* base = static_cast<const uint8_t*>(s.w.data);
  for (int64_t r = r0; r < r0 + n; ++r) {
    float* o = out + (r - r0) * s.cols;
    const size_t at = size_t(r * s.cols);
    switch (s.w.dtype) {
      case DType::F8_E4M3:
        for (int64_t c0 = 0; c0 < s.cols; c0 += s.bc) {
          float sc;
          std::memcpy(&sc, s.scale + size_t((r / s.br) * s.scale_cols + c0 / s.bc) * 4, 4);
          const int64_t c1 = std::min(c0 + s.bc, s.cols);
          for (int64_t c = c0; c < c1; ++c) o[c] = fp8e4m3_to_f32(base[at + size_t(c)]) * sc;
        }
        break;
      case DType::BF16:
        for (int64_t c = 0; c < s.cols; ++c) {
          uint16_t h;
          std::memcpy(&h, base + (at + size_t(c)) * 2, 2);
          o[c] = bf16_to_f32(h);
        }
        break;
      case DType::F16:
        for (int64_t c = 0; c < s.cols; ++c) {
          uint16_t h;
          std::memcpy(&h, base + (at + size_t(c)) * 2, 2);
          o[c] = f16_to_f32(h);
        }
        break;
      case DType::F32:
        std::memcpy(o, base + at * 4, size_t(s.cols) * 4);
        break;
      default:
        fail("quantize: tensor of dtype ", dtype_name(s.w.dtype), " cannot be read as float");
    }
  }
}

// n values of x as `type` into out (n whole blocks of it).
void encode(DType type, const float* x, int64_t n, uint8_t* out) {
  switch (type) {
    case DType::F32: std::memcpy(out, x, size_t(n) * 4); break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    default: ggml::quantize(type, x, n, out); break;
  }
}

Source source_of(const Checkpoint& ck, const ModelConfig& c, const std::string& name) {
  Source s;
  s.w = ck.get(name);
  s.rows = s.w.shape.rank == 1 ? 1 : s.w.shape[0];
  s.cols = s.w.shape.rank == 1 ? s.w.shape[0] : s.w.shape[1];
  if (s.w.dtype == DType::F8_E4M3) {  // scales validated by load_weights
    const TensorView sc = ck.get(name + "_scale_inv");
    s.scale = static_cast<const uint8_t*>(sc.data);
    s.scale_cols = sc.shape[1];
    s.br = c.weight_block_rows;
    s.bc = c.weight_block_cols;
  }
  return s;
}

bool same_bytes(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

// The file's tensors in the converter's naming: for every checkpoint tensor (visit_tensors'
// order), its GGUF tensor; routed experts stacked, kv_b_proj split into attn_k_b / attn_v_b.
std::vector<Planned> plan(const Checkpoint& ck, const ModelConfig& c, QuantTarget target, bool mtp) {
  std::vector<Planned> out;
  auto add = [&](const std::string& name, const Shape& shape, std::vector<Piece> pieces, int64_t layer) {
    Planned p{name, shape, DType::F32, std::move(pieces)};
    p.type = recipe_type(target, {.name = name, .layer = layer, .n_layers = c.num_hidden_layers,
                                  .rank = shape.rank, .row = p.row()});
    out.push_back(std::move(p));
  };
  const std::string mtp_prefix = "model.layers." + std::to_string(c.num_hidden_layers) + ".";
  std::map<std::string, size_t> stacked;  // GGUF name -> index in out
  visit_tensors(c, mtp, nullptr, [&](const TensorSpec& s) {
    const auto m = match_hf_tensor_name(s.name);
    DSV3_CHECK(m, ck.file_of(s.name), ": tensor '", s.name, "' has no GGUF name");
    const Source src = source_of(ck, c, s.name);
    // The MTP layer's copies of the embedding and head: llama.cpp uses the main ones when absent.
    if (s.name == mtp_prefix + "embed_tokens.weight" && same_bytes(src.w, ck.get("model.embed_tokens.weight"))) return;
    if (s.name == mtp_prefix + "shared_head.head.weight" && ck.has("lm_head.weight") &&
        same_bytes(src.w, ck.get("lm_head.weight")))
      return;
    const GgufLayout layout = m->row->layout;
    if (layout == GgufLayout::Experts) {  // visited expert by expert, gate, up and down each
      const std::string name = gguf_tensor_name(*m->row, m->layer);
      if (m->expert == 0) {
        stacked[name] = out.size();
        add(name, Shape{c.n_routed_experts, src.rows, src.cols}, {}, m->layer);
        out.back().routed = true;
      }
      Planned& p = out[stacked.at(name)];
      DSV3_ASSERT(m->expert == int64_t(p.pieces.size()));
      p.pieces.push_back({src, 0, src.rows});
      return;
    }
    if (s.name.ends_with("self_attn.kv_b_proj.weight")) {
      // [heads * (nope + v), rank] -> attn_k_b [heads, rank, nope] and attn_v_b [heads, v, rank]
      const int64_t heads = c.num_attention_heads, nope = c.qk_nope_head_dim, v = c.v_head_dim, rank = c.kv_lora_rank;
      std::vector<Piece> k, vb;
      for (int64_t h = 0; h < heads; ++h) {
        k.push_back({src, h * (nope + v), nope, true});
        vb.push_back({src, h * (nope + v) + nope, v});
      }
      for (const GgufTensorName& row : gguf_tensor_names()) {
        if (row.layout == GgufLayout::KvBKeys) add(gguf_tensor_name(row, m->layer), Shape{heads, rank, nope}, k, m->layer);
        if (row.layout == GgufLayout::KvBValues) add(gguf_tensor_name(row, m->layer), Shape{heads, v, rank}, vb, m->layer);
      }
      return;
    }
    add(gguf_tensor_name(*m->row, m->layer), s.shape, {{src, 0, src.rows}}, m->layer);
  });
  for (const Planned& p : out) {
    int64_t rows = 0;
    for (const Piece& pc : p.pieces) {
      DSV3_ASSERT(pc.out_row_len() == p.row());
      rows += pc.out_rows();
    }
    DSV3_ASSERT(rows * p.row() == p.shape.numel());
  }
  return out;
}

}  // namespace

QuantizeStats quantize_checkpoint(const QuantizeOptions& opt) {
  DSV3_CHECK(!opt.out_path.empty(), "quantize: no output file given");
  DSV3_CHECK(fs::is_directory(opt.model_dir), opt.model_dir, ": not a checkpoint folder (not a directory)");
  DSV3_CHECK(!fs::is_directory(opt.out_path), opt.out_path, ": is a folder (give a .gguf file name)");
  DSV3_CHECK(opt.force || !fs::exists(opt.out_path), opt.out_path, ": exists (use --force to replace it)");
  const ModelConfig config = ModelConfig::from_file((fs::path(opt.model_dir) / "config.json").string());
  const Checkpoint ck = Checkpoint::open(opt.model_dir);
  const ModelWeights weights = load_weights(ck, config, opt.mtp);  // validates every shape and scale
  const bool mtp = opt.mtp && !weights.mtp.empty();

  const std::vector<Planned> tensors = plan(ck, config, opt.target, mtp);
  QuantizeStats st;
  uint64_t routed = 0;
  for (const Planned& p : tensors) {
    st.params += uint64_t(p.shape.numel());
    st.bytes_out += p.bytes();
    ++st.type_counts[p.type];
    if (p.routed) routed += uint64_t(p.shape.numel());
  }
  for (const auto& [name, loc] : ck.tensors()) st.bytes_in += ck.get(name).nbytes();
  st.tensors = int64_t(tensors.size());

  GgufWriter w;
  gguf::ModelInfo info;
  info.name = fs::path(opt.model_dir).lexically_normal().filename().string();
  if (info.name.empty()) info.name = fs::path(opt.model_dir).lexically_normal().parent_path().filename().string();
  const int64_t n_experts = config.n_routed_experts;
  info.size_label = gguf_size_label(st.params - routed, n_experts > 0 ? routed / uint64_t(n_experts) : 0, n_experts);
  info.file_type = gguf::FileType(quant_target_file_type(opt.target));
  info.mtp = mtp;
  add_deepseek2_metadata(w, config, info);
  add_tokenizer_metadata(w, opt.model_dir, config.vocab_size, opt.tokenizer_pre);
  for (const Planned& p : tensors) w.add_tensor(p.name, *ggml_type_of(p.type), p.shape, p.bytes());

  ThreadPool pool(opt.threads > 0 ? opt.threads : ThreadPool::default_threads());
  std::optional<Progress> progress;
  if (opt.progress) progress.emplace("quantize " + fs::path(opt.out_path).filename().string(), st.bytes_out, "B");
  std::vector<float> x, xt;
  std::vector<uint8_t> q;
  w.write(opt.out_path, [&](size_t i, const GgufWriter::Sink& sink) {
    const Planned& p = tensors[i];
    const int64_t row = p.row();
    const uint64_t row_bytes = dtype_row_bytes(p.type, row);
    for (const Piece& pc : p.pieces) {
      if (opt.stop && opt.stop->load()) fail("interrupted: ", opt.out_path, " was not written");
      if (pc.transpose) {
        x.resize(size_t(pc.nrows * pc.src.cols));
        decode_rows(pc.src, pc.row0, pc.nrows, x.data());
        xt.resize(x.size());
        for (int64_t r = 0; r < pc.nrows; ++r)
          for (int64_t c = 0; c < pc.src.cols; ++c) xt[size_t(c * pc.nrows + r)] = x[size_t(r * pc.src.cols + c)];
        q.resize(size_t(pc.src.cols) * row_bytes);
        pool.parallel_for(pc.src.cols, [&](int64_t b, int64_t e) {
          encode(p.type, xt.data() + b * row, (e - b) * row, q.data() + size_t(b) * row_bytes);
        });
        sink(q);
        if (progress) progress->advance(q.size());
        continue;
      }
      const int64_t step = std::max<int64_t>(1, kChunkValues / row);
      for (int64_t r = 0; r < pc.nrows; r += step) {
        if (opt.stop && opt.stop->load()) fail("interrupted: ", opt.out_path, " was not written");
        const int64_t n = std::min(step, pc.nrows - r);
        x.resize(size_t(n * row));
        q.resize(size_t(n) * row_bytes);
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
          decode_rows(pc.src, pc.row0 + r + b, e - b, x.data() + b * row);
          encode(p.type, x.data() + b * row, (e - b) * row, q.data() + size_t(b) * row_bytes);
        });
        sink(q);
        if (progress) progress->advance(q.size());
      }
    }
  });
  if (progress) progress->finish();
  return st;
}

}  // namespace dsv3
