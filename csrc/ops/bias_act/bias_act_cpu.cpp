// CPU backend of bias_act: the kernels of bias_act_cpu_kernels.h built for the baseline x86-64 ISA, AVX2+FMA and
// AVX-512 (common/cpu_isa.h), the widest this CPU runs picked at run time.
#include "ops/bias_act/bias_act.h"

#include "common/cpu_isa.h"
#include "common/element.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

namespace pygan::bias_act {
namespace {

#define PYGAN_CPU_KERNELS "ops/bias_act/bias_act_cpu_kernels.h"
#include "common/cpu_isa_builds.inc"

void forward_cpu(const at::Tensor& x, const Layout& l, Act act, const Params& p, at::Tensor& y) {
  PYGAN_CPU_PICK(forward_cpu)(x, l, act, p, y);
}

void backward_cpu(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                  const Params& p, bool want_slope, at::Tensor& grad_x, at::Tensor& grad_bias, at::Tensor& grad_slope) {
  PYGAN_CPU_PICK(backward_cpu)(grad_y, saved, saved_is_output, l, act, p, want_slope, grad_x, grad_bias, grad_slope);
}

constexpr Backend kCpu{&forward_cpu, &backward_cpu};

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CPU, m) {
  m.impl("bias_act", &forward_op<kCpu>);
  m.impl("bias_act_backward", &backward_op<kCpu>);
}

}  // namespace pygan::bias_act
