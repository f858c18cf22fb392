// CPU backend of instance_norm_act: the kernels of instance_norm_act_cpu_kernels.h built for the baseline x86-64
// ISA, AVX2+FMA and AVX-512 (common/cpu_isa.h), the widest this CPU runs picked at run time.
#include "ops/instance_norm_act/instance_norm_act.h"

#include "common/cpu_isa.h"
#include "common/element.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace pygan::ina {
namespace {

#define PYGAN_CPU_KERNELS "ops/instance_norm_act/instance_norm_act_cpu_kernels.h"
#include "common/cpu_isa_builds.inc"

void forward_cpu(const at::Tensor& x, const at::Tensor& r, const Layout& l, Act act, double eps, PlaneParams& p,
                 at::Tensor& y) {
  PYGAN_CPU_PICK(forward_cpu)(x, r, l, act, eps, p, y);
}

void apply_cpu(const at::Tensor& x, const at::Tensor& r, const Layout& l, Act act, const PlaneParams& p, at::Tensor& y) {
  PYGAN_CPU_PICK(apply_cpu)(x, r, l, act, p, y);
}

void backward_cpu(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const at::Tensor& r,
                  const Layout& l, Act act, const PlaneParams& p, bool training, at::Tensor& sum_dz,
                  at::Tensor& sum_dz_xhat, at::Tensor& sum_slope, at::Tensor& grad_x, at::Tensor& grad_r) {
  PYGAN_CPU_PICK(backward_cpu)(grad_y, saved, saved_is_output, r, l, act, p, training, sum_dz, sum_dz_xhat, sum_slope,
                               grad_x, grad_r);
}

const Backend kCpu{forward_cpu, apply_cpu, backward_cpu};

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CPU, m) { register_kernels<kCpu>(m); }

}  // namespace pygan::ina
