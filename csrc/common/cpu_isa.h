#pragma once
// Which build of the CPU kernels runs. An op whose loops are compute-bound compiles its loop header once per
// instruction set, each copy in its own namespace (baseline, avx2, avx512: common/cpu_isa_builds.inc), and picks
// one at run time with PYGAN_CPU_PICK (see bias_act_cpu.cpp). Building the whole extension with -mavx2 or
// -mavx512f instead would make it crash on CPUs without them. Worth it: the fused loops are bound by arithmetic, not
// memory, at SSE2 and AVX2 width, so each doubling of the vector width pays.

namespace pygan {

enum class CpuIsa { Baseline = 0, Avx2 = 1, Avx512 = 2 };

// The widest build this CPU runs, capped by the environment variable PYGAN_CPU_ISA=baseline|avx2|avx512 (read
// once; any other value is an error naming the variable).
CpuIsa cpu_isa();
const char* cpu_isa_name(CpuIsa isa);

}  // namespace pygan

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PYGAN_X86_ISA_BUILDS 1
// prefer-vector-width=512: without it GCC may keep AVX-512 code at 256-bit vectors. (No f16c: GCC 12 does not
// vectorize _Float16 conversions without AVX512-FP16, so element.h's integer conversions stay faster.)
#define PYGAN_BEGIN_AVX2 _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define PYGAN_BEGIN_AVX512 \
  _Pragma("GCC push_options")  \
  _Pragma("GCC target(\"avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512\")")
#define PYGAN_END_ISA _Pragma("GCC pop_options")
#define PYGAN_CPU_PICK(fn)                                                      \
  (::pygan::cpu_isa() == ::pygan::CpuIsa::Avx512 ? avx512::fn                   \
   : ::pygan::cpu_isa() == ::pygan::CpuIsa::Avx2 ? avx2::fn                     \
                                                 : baseline::fn)
#else
#define PYGAN_CPU_PICK(fn) (baseline::fn)
#endif
