#pragma once
// Fused instance normalization + activation (+ residual add): y = act(gamma * (x - mean_nc) * invstd_nc + beta [+ r]),
// statistics per sample and channel over the spatial dims.
//
// Argument checks and orchestration live once in instance_norm_act.cpp; a backend (CPU, CUDA) supplies three passes
// through the `Backend` table. As in batch_norm_act, backward can recover the normalized input from the saved output
// when the activation is invertible and there is no residual (then the input need not be kept).
#include "common/accumulate.h"
#include "common/activation.h"
#include "common/host_device.h"
#include "common/layout.h"

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>
#include <string_view>
#include <tuple>

namespace pygan::ina {

// What the kernels read: mean / invstd [N * C] (plane n * C + c), gamma / beta / slope [C], all contiguous in the
// accumulation dtype and always defined (1, 0 and the fixed negative slope when absent; a shared slope expanded).
struct PlaneParams {
  at::Tensor mean, invstd, gamma, beta, slope;
};

struct Backend {
  // Statistics of every (n, c) plane into p.mean and p.invstd = 1/sqrt(var + eps) (biased variance), then
  // y = act(gamma * (x - mean) * invstd + beta + r). r: undefined, or a tensor in x's layout.
  void (*forward)(const at::Tensor& x, const at::Tensor& r, const Layout& l, Act act, double eps, PlaneParams& p,
                  at::Tensor& y);
  // y = act(gamma * (x - mean) * invstd + beta + r) with the given p.mean and p.invstd.
  void (*apply)(const at::Tensor& x, const at::Tensor& r, const Layout& l, Act act, const PlaneParams& p,
                at::Tensor& y);
  // With z the pre-activation (from the saved output when saved_is_output; else from the input, + r when r is
  // defined), x_hat the normalized input, dz = dy * act'(z), S values per plane: per plane sum_dz, sum_dz_xhat and
  // sum_slope = sum(dy * z * [z <= 0]) (when sum_slope has N * C elements), grad_x = gamma * invstd * (dz -
  // sum_dz / S - x_hat * sum_dz_xhat / S) in training, gamma * invstd * dz otherwise, and grad_r = dz when defined.
  void (*backward)(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const at::Tensor& r,
                   const Layout& l, Act act, const PlaneParams& p, bool training, at::Tensor& sum_dz,
                   at::Tensor& sum_dz_xhat, at::Tensor& sum_slope, at::Tensor& grad_x, at::Tensor& grad_r);
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
    const std::optional<at::Tensor>& slope, double eps, std::string_view activation, double negative_slope);

at::Tensor apply(const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& weight,
                 const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                 const at::Tensor& save_mean, const at::Tensor& save_invstd, const std::optional<at::Tensor>& slope,
                 std::string_view activation, double negative_slope);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Backend& be, const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output,
    const std::optional<at::Tensor>& residual, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool training, std::string_view activation, double negative_slope);

template <const Backend& be>
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_op(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& residual, const std::optional<at::Tensor>& slope, double eps,
    std::string_view activation, double negative_slope) {
  return forward(be, input, weight, bias, residual, slope, eps, activation, negative_slope);
}

template <const Backend& be>
at::Tensor apply_op(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                    const at::Tensor& save_mean, const at::Tensor& save_invstd, const std::optional<at::Tensor>& slope,
                    std::string_view activation, double negative_slope) {
  return apply(be, input, weight, bias, residual, save_mean, save_invstd, slope, activation, negative_slope);
}

template <const Backend& be>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_op(
    const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output,
    const std::optional<at::Tensor>& residual, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool training, std::string_view activation, double negative_slope) {
  return backward(be, grad_out, saved, saved_is_output, residual, weight, bias, slope, save_mean, save_invstd, training,
                  activation, negative_slope);
}

// TORCH_LIBRARY_IMPL(pygan, <key>, m) { register_kernels<be>(m); }
template <const Backend& be>
void register_kernels(torch::Library& m) {
  m.impl("instance_norm_act", &forward_op<be>);
  m.impl("instance_norm_act_apply", &apply_op<be>);
  m.impl("instance_norm_act_backward", &backward_op<be>);
}

}  // namespace pygan::ina
