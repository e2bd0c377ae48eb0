#include "engine/bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "model/params.h"

namespace dsv3 {

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
  const size_t n = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
  pool.parallel_for(int64_t(n), [&](int64_t b, int64_t e) {  // first touch by the reading thread
    for (int64_t i = b; i < e; ++i) buf[size_t(i)] = uint64_t(i);
  });
  double best = 0;
  std::vector<uint64_t> sums(size_t(pool.size()) * 8);  // one cache line per thread
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int ith, int nth) {
      const size_t b = n * size_t(ith) / size_t(nth), e = n * size_t(ith + 1) / size_t(nth);
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      size_t i = b;
      for (; i + 4 <= e; i += 4) {
        s0 += buf[i];
        s1 += buf[i + 1];
        s2 += buf[i + 2];
        s3 += buf[i + 3];
      }
      for (; i < e; ++i) s0 += buf[i];
      sums[size_t(ith) * 8] = s0 + s1 + s2 + s3;
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(n * sizeof(uint64_t)) / secs);
  }
  volatile uint64_t sink = 0;
  for (uint64_t s : sums) sink = sink + s;
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
