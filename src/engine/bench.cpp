#include "engine/bench.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "core/error.h"
#include "kernels/ops.h"
#include "model/params.h"

namespace dsv3 {

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
  // Read the way the decode kernels read weights: vector loads (the kernels' dot product) from
  // memory backed by transparent huge pages where the kernel honours the hint, so the figure is
  // the bandwidth a streaming kernel can reach, not one limited by scalar loads or TLB misses.
  constexpr size_t kAlign = size_t(2) << 20;
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  const int64_t n = int64_t(bytes / sizeof(float));
  std::unique_ptr<float, decltype(&std::free)> buf(static_cast<float*>(std::aligned_alloc(kAlign, bytes)), &std::free);
  if (!buf) throw Error("bench: cannot allocate " + std::to_string(bytes >> 20) + " MiB for the bandwidth measurement");
#ifdef MADV_HUGEPAGE
  madvise(buf.get(), bytes, MADV_HUGEPAGE);
#endif
  float* data = buf.get();
  pool.parallel_for(n, [&](int64_t b, int64_t e) { std::fill(data + b, data + e, 1.0f); });  // first touch by the reader
  double best = 0;
  std::vector<float> sums(size_t(pool.size()) * 16);  // one cache line per thread
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int ith, int nth) {
      const int64_t b = n * ith / nth, e = n * (ith + 1) / nth;
      sums[size_t(ith) * 16] = kernels::dot(data + b, data + b, e - b);
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(bytes) / secs);
  }
  volatile float sink = 0;
  for (float s : sums) sink = sink + s;
  return best;
}

namespace {
double matrix_bytes(const Matrix& m) {
  if (!m.data) return 0;
  double b = double(m.rows) * double(m.row_bytes());
  if (m.quantized()) b += double((m.rows + m.block_rows - 1) / m.block_rows * m.scale_cols) * 4;
  return b;
}
double mlp_bytes(const MLPWeights& m) { return matrix_bytes(m.w1) + matrix_bytes(m.w2) + matrix_bytes(m.w3); }
}  // namespace

StepWeightBytes step_weight_bytes(const ModelConfig& c, const ModelWeights& w) {
  StepWeightBytes s;
  s.embed_row = matrix_bytes(w.embed) / double(std::max<int64_t>(c.vocab_size, 1));
  s.head = matrix_bytes(w.norm) + matrix_bytes(w.head);
  s.fixed = s.head;
  s.layer.assign(w.layers.size(), 0.0);
  s.attention.assign(w.layers.size(), 0.0);
  s.expert.assign(w.layers.size(), 0.0);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const BlockWeights& l = w.layers[i];
    const MLAWeights& a = l.attn;
    double& b = s.layer[i];
    double& attn = s.attention[i];
    attn += matrix_bytes(l.attn_norm);
    for (const Matrix* m : {&a.wq, &a.wq_a, &a.q_norm, &a.wq_b, &a.wkv_a, &a.kv_norm, &a.wkv_b, &a.wo})
      attn += matrix_bytes(*m);
    b += attn + matrix_bytes(l.ffn_norm);
    if (!l.is_moe) {
      b += mlp_bytes(l.mlp);
    } else {
      b += matrix_bytes(l.moe.gate) + matrix_bytes(l.moe.gate_bias) + mlp_bytes(l.moe.shared);
      double experts = 0;
      for (const MLPWeights& e : l.moe.experts) experts += mlp_bytes(e);
      s.expert[i] = l.moe.experts.empty() ? 0 : experts / double(l.moe.experts.size());
    }
    s.fixed += b;
  }
  return s;
}

double StepWeightBytes::decode(int64_t experts_per_tok) const {
  double b = fixed + embed_row;
  for (double e : expert) b += e * double(experts_per_tok);
  return b;
}

double StepWeightBytes::step(int64_t rows, std::span<const int64_t> distinct) const {
  DSV3_ASSERT(distinct.size() == expert.size());
  double b = fixed + embed_row * double(rows);
  for (size_t l = 0; l < expert.size(); ++l) b += expert[l] * double(distinct[l]);
  return b;
}

std::vector<int64_t> distinct_experts(const ForwardTrace& t) {
  std::vector<int64_t> d;
  for (const auto& layer : t.routing) {
    std::vector<int32_t> e;
    for (const Routing& r : layer) e.insert(e.end(), r.experts.begin(), r.experts.end());
    std::sort(e.begin(), e.end());
    d.push_back(int64_t(std::unique(e.begin(), e.end()) - e.begin()));
  }
  return d;
}

namespace {
// 2 x the active weights a token multiplies by in its layers (lm_head and embedding apart), and
// the attention FLOPs of one (query, key) pair over all layers and heads.
double layer_flops_per_token(const ModelConfig& c) {
  const double head = double(c.vocab_size) * double(c.hidden_size);
  return 2.0 * (double(count_params(c).active) - 2 * head);
}
double attention_flops_per_pair(const ModelConfig& c) {
  return 2.0 * double(c.num_hidden_layers) * double(c.num_attention_heads) * double(c.qk_head_dim() + c.v_head_dim);
}
double head_flops(const ModelConfig& c) { return 2.0 * double(c.vocab_size) * double(c.hidden_size); }
}  // namespace

double prefill_flops(const ModelConfig& c, int64_t n) {
  const double pairs = double(n) * double(n + 1) / 2;  // causal (query, key) pairs
  return layer_flops_per_token(c) * double(n) + head_flops(c) + attention_flops_per_pair(c) * pairs;
}

double decode_flops(const ModelConfig& c, double positions) {
  return layer_flops_per_token(c) + head_flops(c) + attention_flops_per_pair(c) * positions;
}

}  // namespace dsv3
