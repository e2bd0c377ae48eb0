#include "train/attention.h"

#include <algorithm>
#include <cmath>

namespace dsv3::train {

namespace {
template <typename T>
T* P(const Matrix& m) {
  return static_cast<T*>(const_cast<void*>(m.data));
}
template <typename T>
void for_each(const Exec& e, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (e.pool)
    e.pool->parallel_for(n, fn);
  else
    fn(0, n);
}
}  // namespace

template <typename T>
void mla_train_forward(const Exec& e, const ModelConfig& c, const RopeTable& rope, const MLAWeights& w, const T* x,
                       int64_t B, int64_t Tn, T* out, MLAAct<T>& a) {
  const int64_t n = B * Tn, dim = c.hidden_size, H = c.num_attention_heads, dn = c.qk_nope_head_dim,
                dr = c.qk_rope_head_dim, dv = c.v_head_dim, dqk = c.qk_head_dim(), rank = c.kv_lora_rank,
                ql = c.q_lora_rank, dkvb = dn + dv;
  // q = wq(x) or wq_b(q_norm(wq_a(x)))                                            [n, H, dqk]
  a.q.resize(size_t(n * H * dqk));
  if (ql == 0) {
    linear_fwd(e, P<T>(w.wq), H * dqk, dim, x, n, a.q.data());
  } else {
    a.q_a.resize(size_t(n * ql));
    a.q_n.resize(size_t(n * ql));
    a.q_rstd.resize(static_cast<size_t>(n));
    linear_fwd(e, P<T>(w.wq_a), ql, dim, x, n, a.q_a.data());
    rmsnorm_fwd(a.q_a.data(), ql, P<T>(w.q_norm), n, ql, c.rms_norm_eps, a.q_n.data(), ql, a.q_rstd.data());
    linear_fwd(e, P<T>(w.wq_b), H * dqk, ql, a.q_n.data(), n, a.q.data());
  }
  // [c_kv | k_pe] = wkv_a(x); c_kv = kv_norm(c_kv); k_pe and q_pe rotated.
  a.kv.resize(size_t(n * (rank + dr)));
  a.kv_rstd.resize(static_cast<size_t>(n));
  a.c_n.resize(size_t(n * rank));
  a.k_pe.resize(size_t(n * dr));
  linear_fwd(e, P<T>(w.wkv_a), rank + dr, dim, x, n, a.kv.data());
  rmsnorm_fwd(a.kv.data(), rank + dr, P<T>(w.kv_norm), n, rank, c.rms_norm_eps, a.c_n.data(), rank, a.kv_rstd.data());
  for (int64_t r = 0; r < n; ++r) {
    const int64_t pos = r % Tn;
    std::copy(&a.kv[size_t(r * (rank + dr) + rank)], &a.kv[size_t((r + 1) * (rank + dr))], &a.k_pe[size_t(r * dr)]);
    rope_rotate(&a.k_pe[size_t(r * dr)], rope, pos, false);
    for (int64_t h = 0; h < H; ++h) rope_rotate(&a.q[size_t((r * H + h) * dqk + dn)], rope, pos, false);
  }
  // [k_nope | v] per head = wkv_b(c_kv)                                            [n, H, dn + dv]
  a.kvb.resize(size_t(n * H * dkvb));
  linear_fwd(e, P<T>(w.wkv_b), H * dkvb, rank, a.c_n.data(), n, a.kvb.data());

  // Causal attention per (sequence, head).
  const T scale = T(rope.softmax_scale);
  a.p.assign(size_t(B * H * Tn * Tn), T(0));
  a.o.resize(size_t(n * H * dv));
  for_each<T>(e, B * H, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t rt = b * Tn + t;
        const T* q = &a.q[size_t((rt * H + h) * dqk)];
        T* p = &a.p[size_t((bh * Tn + t) * Tn)];
        T mx = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          const int64_t rs = b * Tn + s;
          const T* k = &a.kvb[size_t((rs * H + h) * dkvb)];
          const T* kp = &a.k_pe[size_t(rs * dr)];
          T acc = 0, acc_pe = 0;
          for (int64_t i = 0; i < dn; ++i) acc += q[i] * k[i];
          for (int64_t i = 0; i < dr; ++i) acc_pe += q[dn + i] * kp[i];
          p[s] = (acc + acc_pe) * scale;
          mx = std::max(mx, p[s]);
        }
        T sum = 0;
        for (int64_t s = 0; s <= t; ++s) sum += (p[s] = std::exp(p[s] - mx));
        const T inv = T(1) / sum;
        T* o = &a.o[size_t((rt * H + h) * dv)];
        std::fill(o, o + dv, T(0));
        for (int64_t s = 0; s <= t; ++s) {
          p[s] *= inv;
          const T* v = &a.kvb[size_t(((b * Tn + s) * H + h) * dkvb + dn)];
          for (int64_t i = 0; i < dv; ++i) o[i] += p[s] * v[i];
        }
      }
    }
  });
  linear_fwd(e, P<T>(w.wo), dim, H * dv, a.o.data(), n, out);
}

template <typename T>
void mla_train_backward(const Exec& e, const ModelConfig& c, const RopeTable& rope, const MLAWeights& w,
                        const MLAWeights& g, const T* x, int64_t B, int64_t Tn, const T* dout, T* dx, MLAAct<T>& a) {
  const int64_t n = B * Tn, dim = c.hidden_size, H = c.num_attention_heads, dn = c.qk_nope_head_dim,
                dr = c.qk_rope_head_dim, dv = c.v_head_dim, dqk = c.qk_head_dim(), rank = c.kv_lora_rank,
                ql = c.q_lora_rank, dkvb = dn + dv;
  std::vector<T> d_o(size_t(n * H * dv));
  linear_bwd(e, P<T>(w.wo), P<T>(g.wo), dim, H * dv, a.o.data(), dout, n, d_o.data(), false);

  // Attention core backward per (sequence, head); k_pe is shared by the heads, so each head
  // writes its own slice and the slices are summed in head order afterwards.
  const T scale = T(rope.softmax_scale);
  std::vector<T> dq(size_t(n * H * dqk), T(0)), d_kvb(size_t(n * H * dkvb), T(0));
  std::vector<T> dkpe_h(size_t(B * H * Tn * dr), T(0));
  for_each<T>(e, B * H, [&](int64_t begin, int64_t end) {
    std::vector<T> dp(static_cast<size_t>(Tn));
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t rt = b * Tn + t;
        const T* p = &a.p[size_t((bh * Tn + t) * Tn)];
        const T* dot = &d_o[size_t((rt * H + h) * dv)];
        T sum = 0;
        for (int64_t s = 0; s <= t; ++s) {
          const int64_t rs = b * Tn + s;
          const T* v = &a.kvb[size_t((rs * H + h) * dkvb + dn)];
          T* dvs = &d_kvb[size_t((rs * H + h) * dkvb + dn)];
          T acc = 0;
          for (int64_t i = 0; i < dv; ++i) {
            acc += dot[i] * v[i];
            dvs[i] += p[s] * dot[i];
          }
          dp[size_t(s)] = acc;
          sum += p[s] * acc;
        }
        const T* q = &a.q[size_t((rt * H + h) * dqk)];
        T* dqt = &dq[size_t((rt * H + h) * dqk)];
        for (int64_t s = 0; s <= t; ++s) {
          const T ds = p[s] * (dp[size_t(s)] - sum) * scale;
          const int64_t rs = b * Tn + s;
          const T* k = &a.kvb[size_t((rs * H + h) * dkvb)];
          T* dk = &d_kvb[size_t((rs * H + h) * dkvb)];
          const T* kp = &a.k_pe[size_t(rs * dr)];
          T* dkp = &dkpe_h[size_t((bh * Tn + s) * dr)];
          for (int64_t i = 0; i < dn; ++i) {
            dqt[i] += ds * k[i];
            dk[i] += ds * q[i];
          }
          for (int64_t i = 0; i < dr; ++i) {
            dqt[dn + i] += ds * kp[i];
            dkp[i] += ds * q[dn + i];
          }
        }
      }
    }
  });

  // kv path: dkv = [d c_kv before norm | d k_pe before rotation]
  std::vector<T> d_cn(size_t(n * rank)), dkv(size_t(n * (rank + dr)));
  linear_bwd(e, P<T>(w.wkv_b), P<T>(g.wkv_b), H * dkvb, rank, a.c_n.data(), d_kvb.data(), n, d_cn.data(), false);
  rmsnorm_bwd(a.kv.data(), rank + dr, P<T>(w.kv_norm), a.kv_rstd.data(), d_cn.data(), rank, n, rank, dkv.data(),
              rank + dr, false, P<T>(g.kv_norm));
  for (int64_t r = 0; r < n; ++r) {
    const int64_t b = r / Tn, t = r % Tn;
    T* d = &dkv[size_t(r * (rank + dr) + rank)];
    std::fill(d, d + dr, T(0));
    for (int64_t h = 0; h < H; ++h) {
      const T* src = &dkpe_h[size_t(((b * H + h) * Tn + t) * dr)];
      for (int64_t i = 0; i < dr; ++i) d[i] += src[i];
    }
    rope_rotate(d, rope, t, true);
    for (int64_t h = 0; h < H; ++h) rope_rotate(&dq[size_t((r * H + h) * dqk + dn)], rope, t, true);
  }
  linear_bwd(e, P<T>(w.wkv_a), P<T>(g.wkv_a), rank + dr, dim, x, dkv.data(), n, dx, true);

  // q path
  if (ql == 0) {
    linear_bwd(e, P<T>(w.wq), P<T>(g.wq), H * dqk, dim, x, dq.data(), n, dx, true);
  } else {
    std::vector<T> d_qn(size_t(n * ql));
    linear_bwd(e, P<T>(w.wq_b), P<T>(g.wq_b), H * dqk, ql, a.q_n.data(), dq.data(), n, d_qn.data(), false);
    rmsnorm_bwd(a.q_a.data(), ql, P<T>(w.q_norm), a.q_rstd.data(), d_qn.data(), ql, n, ql, d_qn.data(), ql, false,
                P<T>(g.q_norm));
    linear_bwd(e, P<T>(w.wq_a), P<T>(g.wq_a), ql, dim, x, d_qn.data(), n, dx, true);
  }
}

template void mla_train_forward<float>(const Exec&, const ModelConfig&, const RopeTable&, const MLAWeights&,
                                       const float*, int64_t, int64_t, float*, MLAAct<float>&);
template void mla_train_forward<double>(const Exec&, const ModelConfig&, const RopeTable&, const MLAWeights&,
                                        const double*, int64_t, int64_t, double*, MLAAct<double>&);
template void mla_train_backward<float>(const Exec&, const ModelConfig&, const RopeTable&, const MLAWeights&,
                                        const MLAWeights&, const float*, int64_t, int64_t, const float*, float*,
                                        MLAAct<float>&);
template void mla_train_backward<double>(const Exec&, const ModelConfig&, const RopeTable&, const MLAWeights&,
                                         const MLAWeights&, const double*, int64_t, int64_t, const double*, double*,
                                         MLAAct<double>&);

}  // namespace dsv3::train
