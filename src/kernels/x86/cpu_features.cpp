#include "kernels/x86/cpu_features.h"

#include <cpuid.h>

#include <cstdint>

namespace dsv3::kernels::x86 {

namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned sub) {
  Regs r;
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) return Regs{};
  return r;
}

// Register state the OS saves on context switch (XCR0), read with xgetbv. Without OS support
// the instructions fault even when cpuid lists them.
uint64_t xcr0() {
  if (!(cpuid(1, 0).c & (1u << 27))) return 0;  // OSXSAVE
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

bool bit(unsigned reg, int n) { return (reg >> n) & 1u; }

}  // namespace

// Read straight from cpuid (not __builtin_cpu_supports: clang 14 does not know every feature
// name, e.g. "f16c"), with the OS-support check that __builtin_cpu_supports also does.
std::string missing_feature(const std::string& variant) {
  const Regs l1 = cpuid(1, 0), l7 = cpuid(7, 0), l7s1 = cpuid(7, 1);
  const uint64_t os = xcr0();
  const bool os_avx = (os & 0x6) == 0x6;       // XMM and YMM state
  const bool os_avx512 = (os & 0xe6) == 0xe6;  // plus opmask and ZMM state
  if (variant == "avx2") {
    if (!bit(l7.b, 5) || !os_avx) return "avx2";
    if (!bit(l1.c, 12)) return "fma";
    if (!bit(l1.c, 29)) return "f16c";
    return "";
  }
  if (variant == "avx512" || variant == "avx512bf16") {
    if (!bit(l7.b, 16) || !os_avx512) return "avx512f";
    if (!bit(l7.b, 30)) return "avx512bw";
    if (!bit(l7.b, 31)) return "avx512vl";
    if (!bit(l7.b, 17)) return "avx512dq";
    if (!bit(l7.c, 1)) return "avx512vbmi";
    if (!bit(l7.c, 11)) return "avx512vnni";
    if (variant == "avx512bf16" && !bit(l7s1.a, 5)) return "avx512bf16";
    return "";
  }
  return "";
}

}  // namespace dsv3::kernels::x86
