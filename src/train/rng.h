// The trainer's random numbers: splitmix64, small and fully determined by its one word of
// state (which the training state file saves), with a Box-Muller normal.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

namespace dsv3::train {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed = 0) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) / 9007199254740992.0; }  // [0, 1)
  uint64_t below(uint64_t n) { return next() % n; }
  double normal() {
    const double u1 = (double(next() >> 11) + 1.0) / 9007199254740993.0, u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * M_PI * u2);
  }
};

// FNV-1a of a name mixed with a seed: per-tensor streams independent of visiting order.
inline uint64_t hash_seed(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9e3779b97f4a7c15ull);
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

}  // namespace dsv3::train
