// Which x86 instruction-set extensions this CPU (and OS) offers, from cpuid. Compiled with the
// baseline flags only, so it is safe to call on any x86-64 CPU.
#pragma once
#include <string>

namespace dsv3::kernels::x86 {

// Empty if the CPU has every feature the named variant ("avx2", "avx512") was compiled for, else
// the first missing one, as cpuid names it.
std::string missing_feature(const std::string& variant);

}  // namespace dsv3::kernels::x86
