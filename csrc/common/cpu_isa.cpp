#include "common/cpu_isa.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

namespace pygan {
namespace {

CpuIsa supported() {
#ifdef PYGAN_X86_ISA_BUILDS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq"))
    return CpuIsa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return CpuIsa::Avx2;
#endif
  return CpuIsa::Baseline;
}

CpuIsa requested_cap() {
  const char* env = std::getenv("PYGAN_CPU_ISA");
  const std::string_view v = env ? env : "";
  if (v.empty() || v == "avx512") return CpuIsa::Avx512;
  if (v == "avx2") return CpuIsa::Avx2;
  TORCH_CHECK(v == "baseline", "PYGAN_CPU_ISA must be one of baseline, avx2, avx512 (or unset), got '", v, "'");
  return CpuIsa::Baseline;
}

}  // namespace

CpuIsa cpu_isa() {
  static const CpuIsa isa = std::min(supported(), requested_cap());
  return isa;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512: return "avx512";
    case CpuIsa::Avx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace pygan
