// Backend-independent part of instance_norm_act: argument checks (written once for CPU and CUDA), layouts,
// per-channel parameters.
#include "ops/instance_norm_act/instance_norm_act.h"

#include "common/channel_vector.h"
#include "common/checks.h"

#include <ATen/ATen.h>

namespace pygan::ina {
namespace {
constexpr std::string_view kOp = "instance_norm_act";

void check_args(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope,
                const ActivationSpec& spec, std::string_view input_name) {
  TORCH_CHECK(input.dim() >= 2, kOp, ": ", input_name, " must have at least 2 dimensions (N, C, *), got shape ",
              input.sizes());
  check_floating(input, kOp, input_name);
  const int64_t C = input.size(1);
  check_per_channel(weight, input, C, kOp, "weight");
  check_per_channel(bias, input, C, kOp, "bias");
  check_slope_arg(spec, slope, input, kOp);
}

// residual, when given: input's shape, on its device, floating; returned in x's dtype and layout (dense like x).
at::Tensor residual_like(const std::optional<at::Tensor>& residual, const at::Tensor& input, const at::Tensor& x) {
  if (!residual.has_value() || !residual->defined()) return at::Tensor();
  check_same_device(*residual, input, kOp, "residual", "input");
  check_floating(*residual, kOp, "residual");
  TORCH_CHECK(residual->sizes() == input.sizes(), kOp, ": residual must have input's shape ", input.sizes(), ", got ",
              residual->sizes());
  at::Tensor r = residual->to(x.scalar_type()).contiguous(x.suggest_memory_format());
  // the kernels index r as x: same strides (a size-1 dim may carry any stride in either)
  if (r.strides() != x.strides()) r = at::empty_like(x).copy_(r);
  return r;
}

PlaneParams params(const at::Tensor& x, const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                   const std::optional<at::Tensor>& slope, double negative_slope) {
  PlaneParams p;
  p.gamma = channel_vector(weight, x, 1.0);
  p.beta = channel_vector(bias, x, 0.0);
  p.slope = channel_vector(slope, x, negative_slope);
  return p;
}

void check_stats(const at::Tensor& t, const at::Tensor& input, std::string_view op, std::string_view name) {
  const auto acc = acc_dtype(input.scalar_type());
  const int64_t N = input.size(0), C = input.size(1);
  check_same_device(t, input, op, name, "input");
  TORCH_CHECK(t.dim() == 2 && t.size(0) == N && t.size(1) == C && t.scalar_type() == acc, op, ": ", name,
              " must be a (", N, ", ", C, ") ", acc, " tensor (one value per sample and channel, as instance_norm_act ",
              "returns it), got shape ", t.sizes(), " ", t.scalar_type());
}

at::Tensor new_like(const at::Tensor& x) { return at::empty(x.sizes(), x.options().memory_format(x.suggest_memory_format())); }
}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
    const std::optional<at::Tensor>& slope, double eps, std::string_view activation, double negative_slope) {
  const ActivationSpec& spec = activation_spec(activation, kOp);
  check_args(input, weight, bias, slope, spec, "input");
  TORCH_CHECK(eps >= 0, kOp, ": eps must be non-negative, got ", eps);
  const at::Tensor x = dense_for_kernels(input);
  const Layout l = layout_of(x);
  TORCH_CHECK(l.S > 1 || x.numel() == 0, kOp, ": Expected more than 1 spatial element when training, got input size ",
              input.sizes());
  const at::Tensor r = residual_like(residual, input, x);
  PlaneParams p = params(x, weight, bias, slope, negative_slope);
  const auto opts = x.options().dtype(acc_dtype(x.scalar_type()));
  p.mean = at::empty({l.N, l.C}, opts);
  p.invstd = at::empty({l.N, l.C}, opts);
  at::Tensor y = new_like(x);
  if (x.numel() > 0) be.forward(x, r, l, spec.act, eps, p, y);
  return {y, p.mean, p.invstd};
}

at::Tensor apply(const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& weight,
                 const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                 const at::Tensor& save_mean, const at::Tensor& save_invstd, const std::optional<at::Tensor>& slope,
                 std::string_view activation, double negative_slope) {
  const ActivationSpec& spec = activation_spec(activation, kOp);
  check_args(input, weight, bias, slope, spec, "input");
  check_stats(save_mean, input, "instance_norm_act_apply", "save_mean");
  check_stats(save_invstd, input, "instance_norm_act_apply", "save_invstd");
  const at::Tensor x = dense_for_kernels(input);
  const Layout l = layout_of(x);
  const at::Tensor r = residual_like(residual, input, x);
  PlaneParams p = params(x, weight, bias, slope, negative_slope);
  p.mean = save_mean.contiguous();
  p.invstd = save_invstd.contiguous();
  at::Tensor y = new_like(x);
  if (x.numel() > 0) be.apply(x, r, l, spec.act, p, y);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Backend& be, const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output,
    const std::optional<at::Tensor>& residual, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope, const at::Tensor& save_mean,
    const at::Tensor& save_invstd, bool training, std::string_view activation, double negative_slope) {
  const ActivationSpec& spec = activation_spec(activation, kOp);
  check_args(saved, weight, bias, slope, spec, "saved");
  TORCH_CHECK(!(saved_is_output && spec.invertible == When::Never), kOp,
              ": saved_is_output=True needs an invertible activation; ", spec.name, " backward needs the input");
  TORCH_CHECK(!(saved_is_output && residual.has_value() && residual->defined()), kOp,
              ": saved_is_output=True cannot be combined with a residual (the input is recovered without it)");
  check_floating(grad_out, kOp, "grad_out");
  check_same_device(grad_out, saved, kOp, "grad_out", "saved");
  TORCH_CHECK(grad_out.sizes() == saved.sizes(), kOp, ": grad_out must have the shape of the saved tensor ",
              saved.sizes(), ", got ", grad_out.sizes());
  check_stats(save_mean, saved, kOp, "save_mean");
  check_stats(save_invstd, saved, kOp, "save_invstd");

  const at::Tensor s = dense_for_kernels(saved);
  const Layout l = layout_of(s);
  const at::Tensor r = residual_like(residual, saved, s);
  // grad_out in the saved tensor's dtype and layout, so one index addresses both; never written to.
  at::Tensor dy = grad_out.to(s.scalar_type()).contiguous(s.suggest_memory_format());
  if (dy.strides() != s.strides()) dy = at::empty_like(s).copy_(dy);
  const auto acc = acc_dtype(s.scalar_type());
  PlaneParams p = params(s, weight, bias, slope, negative_slope);
  p.mean = save_mean.contiguous();
  p.invstd = save_invstd.contiguous();

  const auto vec_opts = s.options().dtype(acc);
  const bool want_slope = spec.slope == Slope::Learned;
  at::Tensor sum_dz = at::zeros({l.N, l.C}, vec_opts), sum_dz_xhat = at::zeros({l.N, l.C}, vec_opts);
  at::Tensor sum_slope = at::zeros({want_slope ? l.N * l.C : 0}, vec_opts);
  at::Tensor grad_x = new_like(s);
  at::Tensor grad_r = r.defined() ? new_like(s) : at::Tensor();
  if (s.numel() > 0) be.backward(dy, s, saved_is_output, r, l, spec.act, p, training, sum_dz, sum_dz_xhat, sum_slope,
                                 grad_x, grad_r);

  auto like = [](const at::Tensor& v, const std::optional<at::Tensor>& param) {
    return param.has_value() && param->defined() ? v.to(param->scalar_type()) : v;
  };
  at::Tensor grad_slope = at::empty({0}, vec_opts);
  if (want_slope) {
    const at::Tensor per_channel = sum_slope.view({l.N, l.C}).sum(0);
    grad_slope = like(slope->numel() == 1 ? per_channel.sum().reshape({1}) : per_channel, slope);
  }
  if (!grad_r.defined()) grad_r = at::empty({0}, s.options());
  return {grad_x, like(sum_dz_xhat.sum(0), weight), like(sum_dz.sum(0), bias), grad_slope, grad_r};
}

}  // namespace pygan::ina
