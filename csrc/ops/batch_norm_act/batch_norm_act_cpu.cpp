// CPU backend of batch_norm_act: the kernels of batch_norm_act_cpu_kernels.h built for the baseline x86-64 ISA,
// AVX2+FMA and AVX-512 (common/cpu_isa.h), the widest this CPU runs picked at run time.
#include "ops/batch_norm_act/batch_norm_act.h"

#include "common/cpu_isa.h"
#include "common/element.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace pygan::bna {
namespace {

#define PYGAN_CPU_KERNELS "ops/batch_norm_act/batch_norm_act_cpu_kernels.h"
#include "common/cpu_isa_builds.inc"

void forward_cpu(const at::Tensor& x, const Layout& l, Act act, double eps, ChannelParams& p, at::Tensor& y) {
  PYGAN_CPU_PICK(forward_cpu)(x, l, act, eps, p, y);
}

void normalize_act_cpu(const at::Tensor& x, const Layout& l, Act act, const ChannelParams& p, at::Tensor& y) {
  PYGAN_CPU_PICK(normalize_act_cpu)(x, l, act, p, y);
}

void backward_cpu(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                  const ChannelParams& p, bool training, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat,
                  at::Tensor& sum_slope, at::Tensor& grad_x) {
  PYGAN_CPU_PICK(backward_cpu)(grad_y, saved, saved_is_output, l, act, p, training, sum_dz, sum_dz_xhat, sum_slope, grad_x);
}

void update_stats_cpu(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                      const at::Tensor& invstd, double momentum, double eps, int64_t count) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_mean.scalar_type(), "batch_norm_update_stats", [&] {
    scalar_t* rm = running_mean.mutable_data_ptr<scalar_t>();
    scalar_t* rv = running_var.mutable_data_ptr<scalar_t>();
    const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
    auto update = [&](const auto* m, const auto* is) {
      for (int64_t c = 0; c < mean.numel(); ++c) update_running(rm[c], rv[c], m[c], is[c], momentum, eps, unbias);
    };
    if (mean.scalar_type() == at::kDouble) update(mean.const_data_ptr<double>(), invstd.const_data_ptr<double>());
    else update(mean.const_data_ptr<float>(), invstd.const_data_ptr<float>());
  });
}

const Backend kCpu{forward_cpu, update_stats_cpu, normalize_act_cpu, backward_cpu};

}  // namespace

TORCH_LIBRARY_IMPL(pygan, CPU, m) { register_kernels<kCpu>(m); }

}  // namespace pygan::bna
