// Vector-length-agnostic activation kernels (rmsnorm, softmax, silu_mul, dot, axpy) over an
// ISA's traits V; instantiated in each ISA's translation unit, like simd/linear.h.
#pragma once
#include <cstdint>

#include "kernels/matrix.h"
#include "kernels/simd/linear.h"

namespace dsv3::kernels::simd {

template <class V>
static inline int tail(int64_t n, int64_t i) {
  return n - i < V::kLanes ? int(n - i) : V::kLanes;
}

// Four independent accumulators hide the FMA latency; combined as (0 + 1) + (2 + 3).
template <class V>
float dot(const float* a, const float* b, int64_t n) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  Reg acc[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L)
    for (int k = 0; k < 4; ++k) acc[k] = V::fma(V::load_f32(a + i + k * L, L), V::load_f32(b + i + k * L, L), acc[k]);
  for (int k = 0; i < n; i += L, k = (k + 1) & 3)
    acc[k] = V::fma(V::load_f32(a + i, tail<V>(n, i)), V::load_f32(b + i, tail<V>(n, i)), acc[k]);
  return V::reduce_add(V::add(V::add(acc[0], acc[1]), V::add(acc[2], acc[3])));
}

template <class V>
void axpy(float a, const float* x, float* y, int64_t n) {
  const typename V::Reg av = V::set1(a);
  for (int64_t i = 0; i < n; i += V::kLanes) {
    const int c = tail<V>(n, i);
    V::store_f32(y + i, V::fma(av, V::load_f32(x + i, c), V::load_f32(y + i, c)), c);
  }
}

// y = x / sqrt(mean(x^2) + eps) * weight; y may alias x.
template <class V>
void rmsnorm(const float* x, const Matrix& weight, float eps, float* y) {
  constexpr int64_t kChunk = 256;  // weights dequantized a chunk at a time, on the stack
  const int64_t dim = weight.cols;
  typename V::Reg ss = V::zero();
  for (int64_t i = 0; i < dim; i += V::kLanes) {
    const auto v = V::load_f32(x + i, tail<V>(dim, i));
    ss = V::fma(v, v, ss);
  }
  const float inv = 1.0f / V::sqrt_scalar(V::reduce_add(ss) / float(dim) + eps);
  const typename V::Reg iv = V::set1(inv);
  float wbuf[kChunk];
  for (int64_t c0 = 0; c0 < dim; c0 += kChunk) {
    const int64_t m = dim - c0 < kChunk ? dim - c0 : kChunk;
    dequant_row_range_any<V>(weight, 0, c0, m, wbuf);
    for (int64_t i = 0; i < m; i += V::kLanes) {
      const int c = tail<V>(m, i);
      const auto v = V::mul(V::mul(V::load_f32(x + c0 + i, c), iv), V::load_f32(wbuf + i, c));
      V::store_f32(y + c0 + i, v, c);
    }
  }
}

// ops.h softmax_partial: the scaled entries' maximum, then exp(scale x - m) summed in vector lanes.
template <class V>
float softmax_partial(float* x, int64_t n, float scale, float* max) {
  constexpr int L = V::kLanes;
  const typename V::Reg sv = V::set1(scale);
  typename V::Reg mx = V::set1(-__builtin_inff());
  for (int64_t i = 0; i < n; i += L) {
    const int c = tail<V>(n, i);
    const auto s = V::mul(V::load_f32(x + i, c), sv);
    V::store_f32(x + i, s, c);
    mx = V::max(mx, c == L ? s : V::load_f32_fill(x + i, c, -__builtin_inff()));  // lanes past c: -inf
  }
  const float m = V::reduce_max(mx);
  *max = m;
  if (m == -__builtin_inff()) {
    for (int64_t i = 0; i < n; i += L) V::store_f32(x + i, V::zero(), tail<V>(n, i));
    return 0.0f;
  }
  // x[i] <- exp(x[i] - m), summed in vector lanes; -inf entries (and lanes past n) give 0.
  const typename V::Reg mv = V::set1(m);
  typename V::Reg sum = V::zero();
  for (int64_t i = 0; i < n; i += L) {
    const int c = tail<V>(n, i);
    const auto e = V::exp(V::sub(V::load_f32_fill(x + i, c, -__builtin_inff()), mv));
    sum = V::add(sum, e);
    V::store_f32(x + i, e, c);
  }
  return V::reduce_add(sum);
}

// softmax_partial at scale 1 (x * 1 is x), normalised: the scalar twin's structure.
template <class V>
void softmax(float* x, int64_t n) {
  constexpr int L = V::kLanes;
  float m;
  const float sum = softmax_partial<V>(x, n, 1.0f, &m);
  if (sum == 0.0f) return;  // nothing to attend to: all zero
  const typename V::Reg inv = V::set1(1.0f / sum);
  for (int64_t i = 0; i < n; i += L) {
    const int c = tail<V>(n, i);
    V::store_f32(x + i, V::mul(V::load_f32(x + i, c), inv), c);
  }
}

// out = gate / (1 + exp(-gate)) * up.
template <class V>
void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  const typename V::Reg one = V::set1(1.0f);
  for (int64_t i = 0; i < n; i += V::kLanes) {
    const int c = tail<V>(n, i);
    const auto g = V::load_f32(gate + i, c);
    const auto s = V::div(g, V::add(one, V::exp(V::sub(V::zero(), g))));
    V::store_f32(out + i, V::mul(s, V::load_f32(up + i, c)), c);
  }
}

}  // namespace dsv3::kernels::simd
