#include "train/ops.h"

#include <algorithm>
#include <cmath>

#include "model/rope.h"

namespace dsv3::train {

template <typename T>
void rmsnorm_fwd(const T* x, int64_t ldx, const T* w, int64_t n, int64_t d, double eps, T* y, int64_t ldy, T* rstd) {
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * ldx;
    T ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += xr[i] * xr[i];
    const T inv = T(1) / std::sqrt(ss / T(d) + T(eps));
    rstd[r] = inv;
    T* yr = y + r * ldy;
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * inv * w[i];
  }
}

template <typename T>
void rmsnorm_bwd(const T* x, int64_t ldx, const T* w, const T* rstd, const T* dy, int64_t ldy, int64_t n, int64_t d,
                 T* dx, int64_t lddx, bool accumulate, T* dw) {
  // y = x r w with r = (mean(x^2) + eps)^-1/2:  dx = r (g - x r^2 mean(g x)), g = dy w.
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * ldx;
    const T* dyr = dy + r * ldy;
    const T inv = rstd[r];
    T gx = 0;
    for (int64_t i = 0; i < d; ++i) {
      gx += dyr[i] * w[i] * xr[i];
      dw[i] += dyr[i] * xr[i] * inv;
    }
    const T k = inv * inv * gx / T(d);
    T* dxr = dx + r * lddx;
    for (int64_t i = 0; i < d; ++i) {
      const T v = inv * (dyr[i] * w[i] - xr[i] * k);
      dxr[i] = accumulate ? dxr[i] + v : v;
    }
  }
}

RopeTable::RopeTable(const ModelConfig& c, int64_t len) : half(c.qk_rope_head_dim / 2), max_len(len) {
  Rope rope(c);
  softmax_scale = rope.softmax_scale();
  cos.resize(size_t(len * half));
  sin.resize(size_t(len * half));
  for (int64_t p = 0; p < len; ++p) rope.cos_sin(p, &cos[size_t(p * half)], &sin[size_t(p * half)]);
}

template <typename T>
void rope_rotate(T* x, const RopeTable& r, int64_t pos, bool inverse) {
  const float* c = &r.cos[size_t(pos * r.half)];
  const float* s = &r.sin[size_t(pos * r.half)];
  for (int64_t i = 0; i < r.half; ++i) {
    const T a = x[2 * i], b = x[2 * i + 1], ci = T(c[i]), si = inverse ? -T(s[i]) : T(s[i]);
    x[2 * i] = a * ci - b * si;
    x[2 * i + 1] = a * si + b * ci;
  }
}

template <typename T>
double cross_entropy(T* logits, const int32_t* targets, int64_t n, int64_t V, double scale, ThreadPool* pool,
                     std::vector<T>* keep) {
  if (keep) keep->assign(logits, logits + n * V);
  std::vector<double> row_loss(static_cast<size_t>(n));
  auto rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* z = logits + r * V;
      const int32_t t = targets[r];
      const T mx = *std::max_element(z, z + V);
      const T zt = z[t] - mx;
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += double(z[v] = std::exp(z[v] - mx));  // one exp per logit
      row_loss[size_t(r)] = std::log(sum) - double(zt);
      const T k = T(scale / sum);
      for (int64_t v = 0; v < V; ++v) z[v] *= k;
      z[t] -= T(scale);
    }
  };
  if (pool)
    pool->parallel_for(n, rows);
  else
    rows(0, n);
  double total = 0;
  for (double l : row_loss) total += l;
  return total;
}

#define DSV3_INSTANTIATE(T)                                                                                          \
  template void rmsnorm_fwd<T>(const T*, int64_t, const T*, int64_t, int64_t, double, T*, int64_t, T*);              \
  template void rmsnorm_bwd<T>(const T*, int64_t, const T*, const T*, const T*, int64_t, int64_t, int64_t, T*,       \
                               int64_t, bool, T*);                                                                   \
  template void rope_rotate<T>(T*, const RopeTable&, int64_t, bool);                                                 \
  template double cross_entropy<T>(T*, const int32_t*, int64_t, int64_t, double, ThreadPool*, std::vector<T>*);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3::train
