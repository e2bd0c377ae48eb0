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
  double b = double(m.rows) * double(m.cols) * double(dtype_size(m.dtype));
  if (m.quantized()) b += double((m.rows + m.block_rows - 1) / m.block_rows * m.scale_cols) * 4;
  return b;
}
double mlp_bytes(const MLPWeights& m) { return matrix_bytes(m.w1) + matrix_bytes(m.w2) + matrix_bytes(m.w3); }
}  // namespace

double decode_weight_bytes_per_token(const ModelConfig& c, const ModelWeights& w) {
  double b = matrix_bytes(w.embed) / double(std::max<int64_t>(c.vocab_size, 1)) + matrix_bytes(w.norm) +
             matrix_bytes(w.head);
  for (const BlockWeights& l : w.layers) {
    const MLAWeights& a = l.attn;
    b += matrix_bytes(l.attn_norm) + matrix_bytes(l.ffn_norm);
    for (const Matrix* m : {&a.wq, &a.wq_a, &a.q_norm, &a.wq_b, &a.wkv_a, &a.kv_norm, &a.wkv_b, &a.wo})
      b += matrix_bytes(*m);
    if (!l.is_moe) {
      b += mlp_bytes(l.mlp);
      continue;
    }
    b += matrix_bytes(l.moe.gate) + matrix_bytes(l.moe.gate_bias) + mlp_bytes(l.moe.shared);
    double experts = 0;
    for (const MLPWeights& e : l.moe.experts) experts += mlp_bytes(e);
    b += experts / double(l.moe.experts.size()) * double(c.num_experts_per_tok);
  }
  return b;
}

double prefill_flops(const ModelConfig& c, int64_t n) {
  const double head = double(c.vocab_size) * double(c.hidden_size);  // lm_head; the embedding is a lookup
  const double per_token = double(count_params(c).active) - 2 * head;
  const double pairs = double(n) * double(n + 1) / 2;  // causal (query, key) pairs
  const double attention = 2.0 * double(c.num_hidden_layers) * double(c.num_attention_heads) *
                           double(c.qk_head_dim() + c.v_head_dim) * pairs;
  return 2.0 * per_token * double(n) + 2.0 * head + attention;
}

}  // namespace dsv3
