#include "train/optimizer.h"

#include <cmath>

#include "core/error.h"

namespace dsv3::train {

void validate(const OptimConfig& o) {
  DSV3_CHECK(o.lr > 0 && std::isfinite(o.lr), "--lr must be positive, got ", o.lr);
  DSV3_CHECK(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1, "--min-lr-ratio must be in [0, 1], got ", o.min_lr_ratio);
  DSV3_CHECK(o.warmup >= 0, "--warmup must be >= 0, got ", o.warmup);
  DSV3_CHECK(o.steps >= 1, "--steps must be >= 1, got ", o.steps);
  DSV3_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "Adam betas must be in [0, 1)");
  DSV3_CHECK(o.eps > 0, "Adam eps must be positive");
  DSV3_CHECK(o.weight_decay >= 0, "--weight-decay must be >= 0, got ", o.weight_decay);
  DSV3_CHECK(o.clip >= 0, "--clip must be >= 0, got ", o.clip);
}

double lr_at(const OptimConfig& o, int64_t step) {
  if (step < o.warmup) return o.lr * double(step + 1) / double(o.warmup);
  const double progress = std::min(1.0, double(step - o.warmup) / double(std::max<int64_t>(1, o.steps - o.warmup)));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return o.lr * (o.min_lr_ratio + (1.0 - o.min_lr_ratio) * cosine);
}

AdamW::AdamW(const Params<float>& p) : m(p.data.size(), 0.0f), v(p.data.size(), 0.0f) {}

namespace {
constexpr int64_t kBlock = 1 << 16;

// Visits [offset, offset + numel) of every stored trainable tensor, in table order, as
// contiguous ranges no longer than kBlock; fn(begin, end, decay).
template <typename Fn>
void for_ranges(const Params<float>& p, Fn fn) {
  for (const ParamInfo& info : p.table) {
    if (!info.stored || !info.trainable()) continue;
    for (int64_t b = 0; b < info.numel; b += kBlock)
      fn(info.offset + b, info.offset + std::min(info.numel, b + kBlock), info.decay());
  }
}
}  // namespace

double AdamW::step(Params<float>& p, double lr, const OptimConfig& o, ThreadPool* pool) {
  struct Range {
    int64_t begin, end;
    bool decay;
  };
  std::vector<Range> ranges;
  for_ranges(p, [&](int64_t b, int64_t e, bool d) { ranges.push_back({b, e, d}); });
  const int64_t nr = int64_t(ranges.size());
  auto par = [&](const std::function<void(int64_t)>& fn) {
    auto body = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) fn(i);
    };
    if (pool)
      pool->parallel_for(nr, body);
    else
      body(0, nr);
  };
  std::vector<double> sq(size_t(nr), 0.0);
  par([&](int64_t r) {
    double s = 0;
    for (int64_t i = ranges[size_t(r)].begin; i < ranges[size_t(r)].end; ++i) s += double(p.grad[size_t(i)]) * p.grad[size_t(i)];
    sq[size_t(r)] = s;
  });
  double total = 0;
  for (double s : sq) total += s;
  const double norm = std::sqrt(total);
  const float clip_scale = (o.clip > 0 && norm > o.clip) ? float(o.clip / norm) : 1.0f;

  ++t;
  const float b1 = float(o.beta1), b2 = float(o.beta2), eps = float(o.eps);
  const float bc1 = float(1.0 - std::pow(o.beta1, double(t))), bc2 = float(1.0 - std::pow(o.beta2, double(t)));
  const float flr = float(lr), wd = float(lr * o.weight_decay);
  par([&](int64_t r) {
    const Range& rg = ranges[size_t(r)];
    for (int64_t i = rg.begin; i < rg.end; ++i) {
      const size_t k = size_t(i);
      const float g = p.grad[k] * clip_scale;
      m[k] = b1 * m[k] + (1 - b1) * g;
      v[k] = b2 * v[k] + (1 - b2) * g * g;
      const float mhat = m[k] / bc1, vhat = v[k] / bc2;
      if (rg.decay) p.data[k] -= wd * p.data[k];
      p.data[k] -= flr * mhat / (std::sqrt(vhat) + eps);
    }
  });
  return norm;
}

}  // namespace dsv3::train
