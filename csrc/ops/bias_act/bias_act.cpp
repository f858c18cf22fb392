// Backend-independent part of bias_act: argument checks (written once for CPU and CUDA), layouts, parameters.
#include "ops/bias_act/bias_act.h"

#include "common/channel_vector.h"
#include "common/checks.h"

#include <ATen/ATen.h>

namespace pygan::bias_act {
namespace {
constexpr std::string_view kOp = "bias_act";

void check_args(const at::Tensor& input, const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope,
                const ActivationSpec& spec, std::string_view input_name) {
  TORCH_CHECK(input.dim() >= 2, kOp, ": ", input_name, " must have at least 2 dimensions (N, C, *), got shape ",
              input.sizes());
  check_floating(input, kOp, input_name);
  const int64_t C = input.size(1);
  check_per_channel(bias, input, C, kOp, "bias");
  check_slope_arg(spec, slope, input, kOp);
}

Params params(const at::Tensor& x, const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope,
              double negative_slope) {
  return Params{channel_vector(bias, x, 0.0), channel_vector(slope, x, negative_slope)};
}
}  // namespace

at::Tensor forward(const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& bias,
                   const std::optional<at::Tensor>& slope, std::string_view activation, double negative_slope) {
  const ActivationSpec& spec = activation_spec(activation, kOp);
  check_args(input, bias, slope, spec, "input");
  const at::Tensor x = dense_for_kernels(input);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(x.suggest_memory_format()));
  if (x.numel() > 0) be.forward(x, layout_of(x), spec.act, params(x, bias, slope, negative_slope), y);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const Backend& be, const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope, std::string_view activation,
    double negative_slope) {
  const ActivationSpec& spec = activation_spec(activation, kOp);
  check_args(saved, bias, slope, spec, "saved");
  TORCH_CHECK(!(saved_is_output && spec.slope == Slope::Learned), kOp, ": saved_is_output=True is not possible with ",
              spec.name, " (its slope gradient needs the input)");
  TORCH_CHECK(!(saved_is_output && spec.output_gives_derivative == When::Never), kOp,
              ": saved_is_output=True needs an activation whose derivative follows from its output, got ", spec.name);
  TORCH_CHECK(!(saved_is_output && spec.slope == Slope::Fixed && spec.output_gives_derivative == When::PositiveSlope &&
                !(negative_slope > 0)),
              kOp,
              ": saved_is_output=True needs negative_slope > 0 (the output's sign must be the input's), got ",
              negative_slope);
  check_floating(grad_out, kOp, "grad_out");
  check_same_device(grad_out, saved, kOp, "grad_out", "saved");
  TORCH_CHECK(grad_out.sizes() == saved.sizes(), kOp, ": grad_out must have the shape of the saved tensor ",
              saved.sizes(), ", got ", grad_out.sizes());
  const at::Tensor s = dense_for_kernels(saved);
  // grad_out in the saved tensor's layout and dtype, so one index addresses both.
  const at::Tensor gy = grad_out.to(s.scalar_type()).contiguous(s.suggest_memory_format());
  const int64_t C = s.size(1);
  const auto acc = acc_dtype(s.scalar_type());
  const bool want_slope = spec.slope == Slope::Learned;
  at::Tensor grad_x = at::empty(s.sizes(), s.options().memory_format(s.suggest_memory_format()));
  at::Tensor grad_bias = at::zeros({C}, s.options().dtype(acc));
  at::Tensor grad_slope = at::zeros({want_slope ? C : 0}, s.options().dtype(acc));
  if (s.numel() > 0)
    be.backward(gy, s, saved_is_output, layout_of(s), spec.act, params(s, bias, slope, negative_slope), want_slope,
                grad_x, grad_bias, grad_slope);
  if (want_slope && slope->numel() == 1) grad_slope = grad_slope.sum().reshape({1});
  grad_slope = want_slope ? grad_slope.to(slope->scalar_type()) : grad_slope;
  if (bias.has_value() && bias->defined()) grad_bias = grad_bias.to(bias->scalar_type());
  return {grad_x, grad_bias, grad_slope};
}

}  // namespace pygan::bias_act
