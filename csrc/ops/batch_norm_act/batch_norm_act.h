#pragma once
// Fused batch normalization + activation: y = act(gamma * (x - mean) * invstd + beta).
//
// Argument checks, layout handling and the orchestration of passes live once in batch_norm_act.cpp; a
// backend (CPU, CUDA) supplies four passes through the `Backend` table. Backward can recover the normalized
// input from the saved *output* when the activation is invertible (`invertible` in the table,
// common/activation.h), so the forward input need not be kept alive (the In-Place ABN idea); otherwise it reads
// the input.
#include "common/accumulate.h"
#include "common/activation.h"
#include "common/host_device.h"
#include "common/layout.h"

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>
#include <string_view>
#include <tuple>

namespace pygan::bna {

// Per-channel parameters as the kernels read them: contiguous [C] tensors in the accumulation dtype.
// gamma / beta undefined mean 1 / 0 (affine=False); slope undefined means `leaky_slope` for every channel,
// slope with one element is shared by all channels (PReLU's default).
struct ChannelParams {
  at::Tensor mean, invstd, gamma, beta, slope;
  double leaky_slope = 0.0;
};

struct Backend {
  // Training forward: batch statistics into p.mean and p.invstd = 1/sqrt(var + eps) (biased variance), then
  // y = act(gamma * (x - mean) * invstd + beta).
  void (*forward_training)(const at::Tensor& x, const Layout& l, Act act, double eps, ChannelParams& p, at::Tensor& y);
  // running = (1 - momentum) * running + momentum * batch, unbiased variance (1/invstd^2 - eps) * n / (n - 1).
  void (*update_stats)(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                       const at::Tensor& invstd, double momentum, double eps, int64_t count);
  // Evaluation forward: y = act(gamma * (x - mean) * invstd + beta) with the given p.mean and p.invstd.
  void (*normalize_act)(const at::Tensor& x, const Layout& l, Act act, const ChannelParams& p, at::Tensor& y);
  // Backward, with z the pre-activation, x_hat the normalized input, dz = dy * act'(z), M values per channel:
  // sum_dz = sum(dz), sum_dz_xhat = sum(dz * x_hat), sum_slope = sum(dy * z * [z <= 0]) (Leaky only), and
  // grad_x = gamma * invstd * (dz - sum_dz / M - x_hat * sum_dz_xhat / M) in training, gamma * invstd * dz in eval.
  void (*backward)(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                   const ChannelParams& p, bool training, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat,
                   at::Tensor& sum_slope, at::Tensor& grad_x);
};

// The ops' implementations for a backend; both registered per dispatch key by the backend's file.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, const std::optional<at::Tensor>& slope, bool training,
    double eps, std::string_view activation, double negative_slope);

at::Tensor apply(const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& weight,
                 const std::optional<at::Tensor>& bias, const at::Tensor& save_mean, const at::Tensor& save_invstd,
                 const std::optional<at::Tensor>& slope, std::string_view activation, double negative_slope);

void update_stats(const Backend& be, at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& save_mean,
                  const at::Tensor& save_invstd, double momentum, double eps, int64_t count);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Backend& be, const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& slope, const at::Tensor& save_mean, const at::Tensor& save_invstd,
    bool training, std::string_view activation, double negative_slope);

// Kernel functions with the backend bound at compile time, for TORCH_LIBRARY_IMPL in each backend's file.
template <const Backend& be>
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_op(
    const at::Tensor& input, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& slope, bool training, double eps, std::string_view activation,
    double negative_slope) {
  return forward(be, input, weight, bias, running_mean, running_var, slope, training, eps, activation, negative_slope);
}

template <const Backend& be>
at::Tensor apply_op(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                    const std::optional<at::Tensor>& bias, const at::Tensor& save_mean, const at::Tensor& save_invstd,
                    const std::optional<at::Tensor>& slope, std::string_view activation, double negative_slope) {
  return apply(be, input, weight, bias, save_mean, save_invstd, slope, activation, negative_slope);
}

template <const Backend& be>
void update_stats_op(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& save_mean,
                     const at::Tensor& save_invstd, double momentum, double eps, int64_t count) {
  update_stats(be, running_mean, running_var, save_mean, save_invstd, momentum, eps, count);
}

template <const Backend& be>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_op(
    const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool training, std::string_view activation, double negative_slope) {
  return backward(be, grad_out, saved, saved_is_output, weight, bias, slope, save_mean, save_invstd, training,
                  activation, negative_slope);
}

// Registers the four operators' kernels of a backend: TORCH_LIBRARY_IMPL(pygan, <key>, m) { register_kernels<be>(m); }
template <const Backend& be>
void register_kernels(torch::Library& m) {
  m.impl("batch_norm_act", &forward_op<be>);
  m.impl("batch_norm_act_apply", &apply_op<be>);
  m.impl("batch_norm_update_stats", &update_stats_op<be>);
  m.impl("batch_norm_act_backward", &backward_op<be>);
}

// One channel's running-statistics update (the batch variance from invstd, made unbiased by `unbias` = n / (n - 1)).
template <typename run_t, typename stat_t>
PYGAN_HD void update_running(run_t& rm, run_t& rv, stat_t mean, stat_t invstd, double momentum, double eps,
                             double unbias) {
  const double is = static_cast<double>(invstd);
  const double var = (1.0 / (is * is) - eps) * unbias;
  rm = static_cast<run_t>((1.0 - momentum) * static_cast<double>(rm) + momentum * static_cast<double>(mean));
  rv = static_cast<run_t>((1.0 - momentum) * static_cast<double>(rv) + momentum * var);
}

}  // namespace pygan::bna
