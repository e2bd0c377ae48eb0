#include "model/mla.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"

namespace dsv3 {

void mla_forward(const ModelConfig& c, const MLAWeights& w, const Rope& rope, int64_t layer, const float* x, int64_t n,
                 std::span<const TokenSlot> slots, float* out, ThreadPool& pool) {
  const int64_t n_heads = c.num_attention_heads, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim,
                dv = c.v_head_dim, dqk = c.qk_head_dim(), rank = c.kv_lora_rank;

  // q = wq(x) or wq_b(q_norm(wq_a(x)))                                       [n, n_heads, dqk]
  std::vector<float> q(static_cast<size_t>(n * n_heads * dqk));
  if (c.q_lora_rank == 0) {
    kernels::linear(w.wq, x, q.data(), n, pool);
  } else {
    std::vector<float> q_a(static_cast<size_t>(n * c.q_lora_rank));
    kernels::linear(w.wq_a, x, q_a.data(), n, pool);
    for (int64_t t = 0; t < n; ++t) kernels::rmsnorm(&q_a[size_t(t * c.q_lora_rank)], w.q_norm, float(c.rms_norm_eps),
                                                     &q_a[size_t(t * c.q_lora_rank)]);
    kernels::linear(w.wq_b, q_a.data(), q.data(), n, pool);
  }

  // kv = wkv_a(x) -> [c_kv | k_pe]; c_kv = kv_norm(c_kv); k_pe rotated; both cached.  [n, rank + dr]
  std::vector<float> kv(static_cast<size_t>(n * (rank + dr)));
  kernels::linear(w.wkv_a, x, kv.data(), n, pool);
  std::vector<float> cos(static_cast<size_t>(dr / 2)), sin(static_cast<size_t>(dr / 2));
  for (int64_t t = 0; t < n; ++t) {
    KVCache& cache = *slots[size_t(t)].cache;
    const int64_t pos = slots[size_t(t)].pos;
    const float* kv_t = &kv[size_t(t * (rank + dr))];
    kernels::rmsnorm(kv_t, w.kv_norm, float(c.rms_norm_eps), cache.c_kv(layer, pos));
    float* k_pe = cache.k_pe(layer, pos);
    for (int64_t i = 0; i < dr; ++i) k_pe[i] = kv_t[rank + i];
    rope.cos_sin(pos, cos.data(), sin.data());
    kernels::rope_interleaved(k_pe, cos.data(), sin.data(), dr);
    for (int64_t h = 0; h < n_heads; ++h)  // q_pe
      kernels::rope_interleaved(&q[size_t((t * n_heads + h) * dqk + dn)], cos.data(), sin.data(), dr);
  }

  // Per (token, head): q_abs = q_nope W_uk[h]; softmax over the causal window; latent output
  // o = sum_s p_s c_kv[s]; head output = W_uv[h] o.                           [n, n_heads, dv]
  const float scale = rope.softmax_scale();
  std::vector<float> heads_out(static_cast<size_t>(n * n_heads * dv));
  pool.parallel_for(n * n_heads, [&](int64_t begin, int64_t end) {
    int64_t max_len = 0;
    for (const TokenSlot& sl : slots) max_len = std::max(max_len, sl.pos + 1);
    std::vector<float> q_abs(static_cast<size_t>(rank)), scores(static_cast<size_t>(max_len)), o(static_cast<size_t>(rank));
    for (int64_t th = begin; th < end; ++th) {
      const int64_t t = th / n_heads, h = th % n_heads;
      const float* q_th = &q[size_t(th * dqk)];
      const Matrix w_uk = w.wkv_b.row_slice(h * (dn + dv), dn);
      const Matrix w_uv = w.wkv_b.row_slice(h * (dn + dv) + dn, dv);
      std::fill(q_abs.begin(), q_abs.end(), 0.0f);
      kernels::linear_transposed_acc(w_uk, q_th, q_abs.data());
      const KVCache& cache = *slots[size_t(t)].cache;
      const int64_t len = slots[size_t(t)].pos + 1;
      for (int64_t s = 0; s < len; ++s) {
        const float* ck = cache.c_kv(layer, s);
        const float* kp = cache.k_pe(layer, s);
        float a = 0.0f, b = 0.0f;
        for (int64_t i = 0; i < rank; ++i) a += q_abs[size_t(i)] * ck[i];
        for (int64_t i = 0; i < dr; ++i) b += q_th[dn + i] * kp[i];
        scores[size_t(s)] = (a + b) * scale;
      }
      kernels::softmax(scores.data(), len);
      std::fill(o.begin(), o.end(), 0.0f);
      for (int64_t s = 0; s < len; ++s) {
        const float p = scores[size_t(s)];
        const float* ck = cache.c_kv(layer, s);
        for (int64_t i = 0; i < rank; ++i) o[size_t(i)] += p * ck[i];
      }
      kernels::linear(w_uv, o.data(), &heads_out[size_t(th * dv)], 1);
    }
  });

  kernels::linear(w.wo, heads_out.data(), out, n, pool);
}

}  // namespace dsv3
