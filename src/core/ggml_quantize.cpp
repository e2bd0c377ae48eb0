// The quantizers of core/ggml_blocks.h: llama.cpp's quantize_row_*_ref (ggml-quants.c), what
// llama-quantize writes without an importance matrix, with its order of float operations.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/ggml_blocks.h"

namespace dsv3::ggml {

namespace {

constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS: a group this small is all zero

inline uint16_t f2h(float f) { return f32_to_f16(f); }
inline float h2f(uint16_t h) { return f16_to_f32(h); }

// Round to nearest, ties to even, as ggml's nearest_int (adding 1.5 x 2^23 leaves the integer in
// the low mantissa bits). ggml asserts |v| <= 4194303; here larger values (and NaN, which only
// non-finite inputs produce) are clamped first so that no input can fault.
inline int nearest_int(float v) {
  v = std::fmin(std::fmax(v, -4194303.0f), 4194303.0f);
  float t = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &t, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// ---- Scale searches (ggml-quants.c) ------------------------------------------------------------

// Symmetric: L[i] in [0, 2 nmax) for x[i] ~ scale x (L[i] - nmax). rmse_type 1 weighs the fit by
// x^2 and tries 18 scales around -nmax / max. Returns the scale.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t(0));
    return 0.f;
  }
  float iscale = float(-nmax) / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))));
    return 1 / iscale;
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = int8_t(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * float(l);
      suml2 += w * float(l) * float(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Symmetric 3-bit: L[i] in [0, 2 nmax), refined one value at a time for the x^2-weighted fit.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t(0));
    return 0.f;
  }
  const float iscale = float(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * float(L[i]) * float(L[i]);
        const int new_l = std::max(-nmax, std::min(nmax - 1, nearest_int(x[i] * sl2 / slx)));
        if (new_l != L[i]) {
          slx += w * x[i] * float(new_l);
          sl2 += w * float(new_l) * float(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = int8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric: x[i] ~ scale x L[i] - the_min, L[i] in [0, nmax], the weighted error (absolute if
// use_mad) minimised over nstep + 1 scales from (rmin + nmax) / (max - min) in steps of rdelta,
// each with the least-squares scale and minimum for its L.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                       float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, uint8_t(0));
    *the_min = -min;
    return 0.f;
  }
  float iscale = float(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = uint8_t(std::max(0, std::min(nmax, l)));
    float diff = scale * float(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = uint8_t(l);
      const float w = weights[i];
      sum_l += w * float(l);
      sum_l2 += w * float(l) * float(l);
      sum_xl += w * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * float(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// ---- 32-wide formats -----------------------------------------------------------------------------

// The value of largest magnitude (its sign kept), as Q4_0/Q5_0 scale by it.
float signed_absmax(const float* x) {
  float amax = 0, max = 0;
  for (int j = 0; j < kQK; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

void quant(const float* x, BlockQ4_0& y) {
  const float d = signed_absmax(x) / -8;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y.d = f2h(d);
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = std::min(15, int(int8_t(x[j] * id + 8.5f)));
    const int q1 = std::min(15, int(int8_t(x[j + kQK / 2] * id + 8.5f)));
    y.qs[j] = uint8_t(q0 | (q1 << 4));
  }
}

void min_max(const float* x, float* min, float* max) {
  *min = 3.402823466e+38f;
  *max = -3.402823466e+38f;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < *min) *min = x[j];
    if (x[j] > *max) *max = x[j];
  }
}

void quant(const float* x, BlockQ4_1& y) {
  float min, max;
  min_max(x, &min, &max);
  const float d = (max - min) / 15;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y.d = f2h(d);
  y.m = f2h(min);
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = std::min(15, int(int8_t((x[j] - min) * id + 0.5f)));
    const int q1 = std::min(15, int(int8_t((x[j + kQK / 2] - min) * id + 0.5f)));
    y.qs[j] = uint8_t(q0 | (q1 << 4));
  }
}

// Low nibbles into qs, fifth bits into qh (bit j for value j), as Q5_0/Q5_1 store them.
template <class B>
void pack_q5(const int* q, B& y) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    y.qs[j] = uint8_t((q[j] & 0x0F) | ((q[j + kQK / 2] & 0x0F) << 4));
    qh |= uint32_t((q[j] & 0x10) >> 4) << j;
    qh |= uint32_t((q[j + kQK / 2] & 0x10) >> 4) << (j + kQK / 2);
  }
  std::memcpy(y.qh, &qh, sizeof qh);
}

void quant(const float* x, BlockQ5_0& y) {
  const float d = signed_absmax(x) / -16;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y.d = f2h(d);
  int q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = std::min(31, int(uint8_t(int8_t(x[j] * id + 16.5f))));
  pack_q5(q, y);
}

void quant(const float* x, BlockQ5_1& y) {
  float min, max;
  min_max(x, &min, &max);
  const float d = (max - min) / 31;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y.d = f2h(d);
  y.m = f2h(min);
  int q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = int(uint8_t((x[j] - min) * id + 0.5f));
  pack_q5(q, y);
}

void quant(const float* x, BlockQ8_0& y) {
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  y.d = f2h(d);
  for (int j = 0; j < kQK; ++j) y.qs[j] = int8_t(std::round(x[j] * id));  // roundf: ties away from 0
}

// ---- K-quants --------------------------------------------------------------------------------------

// L[0, 256) (2-bit values) into 64 bytes: byte 32 h + l holds values 128 h + l + 32 k at bits 2k.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void quant(const float* x, BlockQ2_K& y) {
  uint8_t L[kQK_K], Laux[16];
  float weights[16], mins[kQK_K / 16], scales[kQK_K / 16];
  constexpr float q4scale = 15.f;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQK_K / 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < kQK_K / 16; ++j) y.scales[j] = uint8_t(nearest_int(iscale * scales[j]));
    y.d = f2h(max_scale / q4scale);
  } else {
    std::memset(y.scales, 0, sizeof y.scales);
    y.d = f2h(0.f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < kQK_K / 16; ++j) y.scales[j] = uint8_t(y.scales[j] | (nearest_int(iscale * mins[j]) << 4));
    y.dmin = f2h(max_min / q4scale);
  } else {
    y.dmin = f2h(0.f);
  }
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = h2f(y.d) * float(y.scales[j] & 0xF);
    if (d == 0) continue;
    const float dm = h2f(y.dmin) * float(y.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = uint8_t(std::max(0, std::min(3, nearest_int((x[16 * j + ii] + dm) / d))));
  }
  pack_2bit(L, y.qs);
}

void quant(const float* x, BlockQ3_K& y) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  float max_scale = 0, amax = 0;
  for (int j = 0; j < kQK_K / 16; ++j) {
    scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    const float scale = std::fabs(scales[j]);
    if (scale > amax) {
      amax = scale;
      max_scale = scales[j];
    }
  }
  std::memset(y.scales, 0, sizeof y.scales);
  if (max_scale != 0) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < kQK_K / 16; ++j) {
      int l = std::max(-32, std::min(31, int(int8_t(nearest_int(iscale * scales[j]))))) + 32;
      if (j < 8)
        y.scales[j] = uint8_t(l & 0xF);
      else
        y.scales[j - 8] = uint8_t(y.scales[j - 8] | ((l & 0xF) << 4));
      l >>= 4;
      y.scales[j % 4 + 8] = uint8_t(y.scales[j % 4 + 8] | (l << (2 * (j / 4))));
    }
    y.d = f2h(1 / iscale);
  } else {
    y.d = f2h(0.f);
  }
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = h2f(y.d) * float(q3k_scale(j, y.scales));
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = int8_t(std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d))) + 4);
  }
  // The high bit of value j goes to bit j / 32 of hmask[j % 32].
  std::memset(y.hmask, 0, sizeof y.hmask);
  uint8_t U[kQK_K];
  for (int j = 0; j < kQK_K; ++j) {
    U[j] = uint8_t(L[j]);
    if (U[j] > 3) {
      y.hmask[j % 32] = uint8_t(y.hmask[j % 32] | (1 << (j / 32)));
      U[j] = uint8_t(U[j] - 4);
    }
  }
  pack_2bit(U, y.qs);
}

// Q4_K and Q5_K's 6-bit scales and minima of the 8 sub-blocks into 12 bytes (q4k_scale_min's
// inverse).
void pack_scale_min(const uint8_t* ls, const uint8_t* lm, uint8_t* scales) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = uint8_t((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      scales[j - 4] = uint8_t(scales[j - 4] | ((ls[j] >> 4) << 6));
      scales[j] = uint8_t(scales[j] | ((lm[j] >> 4) << 6));
    }
  }
}

// Q4_K (nmax 15) and Q5_K (nmax 31): sub-blocks of 32 fitted by make_qkx2_quants, their scales
// and minima quantized to 6 bits, then every value re-quantized with the stored ones into L.
template <class B>
void quant_k_asym(const float* x, B& y, int nmax, float rmin, float rdelta, int nstep, uint8_t* L) {
  uint8_t Laux[32], ls[8], lm[8];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < kQK_K / 32; ++j) {
    ls[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
  }
  std::memset(y.scales, 0, sizeof y.scales);
  pack_scale_min(ls, lm, y.scales);
  y.d = f2h(max_scale / 63.f);
  y.dmin = f2h(max_min / 63.f);
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc, m;
    q4k_scale_min(j, y.scales, &sc, &m);
    const float d = h2f(y.d) * float(sc);
    if (d == 0) continue;
    const float dm = h2f(y.dmin) * float(m);
    for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = uint8_t(std::max(0, std::min(nmax, nearest_int((x[32 * j + ii] + dm) / d))));
  }
}

void quant(const float* x, BlockQ4_K& y) {
  uint8_t L[kQK_K];
  quant_k_asym(x, y, 15, -1.f, 0.1f, 20, L);
  for (int j = 0; j < kQK_K; j += 64)
    for (int l = 0; l < 32; ++l) y.qs[j / 2 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
}

void quant(const float* x, BlockQ5_K& y) {
  uint8_t L[kQK_K];
  quant_k_asym(x, y, 31, -0.5f, 0.1f, 15, L);
  std::memset(y.qh, 0, sizeof y.qh);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kQK_K; n += 64, m1 = uint8_t(m1 << 2), m2 = uint8_t(m2 << 2))
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        y.qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        y.qh[j] |= m2;
      }
      y.qs[n / 2 + j] = uint8_t(l1 | (l2 << 4));
    }
}

void quant(const float* x, BlockQ6_K& y) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
    if (std::fabs(scales[ib]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[ib]);
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&y, 0, sizeof y);
    return;
  }
  const float iscale = -128.f / max_scale;
  y.d = f2h(1 / iscale);
  for (int ib = 0; ib < kQK_K / 16; ++ib) y.scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = h2f(y.d) * float(y.scales[j]);
    if (d == 0) continue;
    for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = int8_t(std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d))) + 32);
  }
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      y.ql[j / 2 + l] = uint8_t(q1 | (q3 << 4));
      y.ql[j / 2 + l + 32] = uint8_t(q2 | (q4 << 4));
      y.qh[j / 4 + l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                ((L[j + l + 96] >> 4) << 6));
    }
}

template <class B>
void quant_blocks(const float* x, int64_t n, void* out, int elems) {
  uint8_t* p = static_cast<uint8_t*>(out);
  for (int64_t i = 0; i < n / elems; ++i) {
    for (int64_t j = i * elems; j < (i + 1) * elems; ++j)  // ggml's searches assume finite values
      DSV3_CHECK(std::isfinite(x[j]), "ggml quantize: value ", j, " is not finite (", x[j], ")");
    B b{};
    quant(x + i * elems, b);
    std::memcpy(p + size_t(i) * sizeof(B), &b, sizeof(B));
  }
}

}  // namespace

void quantize(DType t, const float* x, int64_t n, void* out) {
  DSV3_CHECK(dtype_is_block(t) && dtype_whole_blocks(t, n), "ggml quantize: ", n, " values are not whole blocks of ",
             dtype_name(t));
  switch (t) {
    case DType::Q4_0: return quant_blocks<BlockQ4_0>(x, n, out, kQK);
    case DType::Q4_1: return quant_blocks<BlockQ4_1>(x, n, out, kQK);
    case DType::Q5_0: return quant_blocks<BlockQ5_0>(x, n, out, kQK);
    case DType::Q5_1: return quant_blocks<BlockQ5_1>(x, n, out, kQK);
    case DType::Q8_0: return quant_blocks<BlockQ8_0>(x, n, out, kQK);
    case DType::Q2_K: return quant_blocks<BlockQ2_K>(x, n, out, kQK_K);
    case DType::Q3_K: return quant_blocks<BlockQ3_K>(x, n, out, kQK_K);
    case DType::Q4_K: return quant_blocks<BlockQ4_K>(x, n, out, kQK_K);
    case DType::Q5_K: return quant_blocks<BlockQ5_K>(x, n, out, kQK_K);
    case DType::Q6_K: return quant_blocks<BlockQ6_K>(x, n, out, kQK_K);
    default: fail("ggml quantize: ", dtype_name(t), " is not a block format");
  }
}

}  // namespace dsv3::ggml
