// Backend-independent part of batch_norm_act: argument checks (written once for CPU and CUDA), layouts,
// per-channel parameters, and the order of passes.
#include "ops/batch_norm_act/batch_norm_act.h"

#include "common/checks.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace pygan::bna {
namespace {
constexpr std::string_view kOp = "batch_norm_act";

at::Tensor as_acc_vector(const std::optional<at::Tensor>& t, at::ScalarType acc) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  return t->to(acc).contiguous();
}

const ActivationSpec& spec_of(std::string_view activation) { return activation_spec(activation, kOp); }

void check_params(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                  const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope,
                  const ActivationSpec& spec) {
  TORCH_CHECK(input.dim() >= 2, kOp, ": input must have at least 2 dimensions (N, C, *), got shape ", input.sizes());
  check_floating(input, kOp, "input");
  const int64_t C = input.size(1);
  check_per_channel(weight, input, C, kOp, "weight");
  check_per_channel(bias, input, C, kOp, "bias");
  check_slope_arg(spec, slope, input, kOp);
}

ChannelParams channel_params(const at::Tensor& input, const std::optional<at::Tensor>& weight,
                             const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope,
                             double negative_slope) {
  const auto acc = acc_dtype(input.scalar_type());
  ChannelParams p;
  p.gamma = as_acc_vector(weight, acc);
  p.beta = as_acc_vector(bias, acc);
  p.slope = as_acc_vector(slope, acc);
  p.leaky_slope = negative_slope;
  return p;
}
}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(
    const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& running_mean,
    const std::optional<at::Tensor>& running_var, const std::optional<at::Tensor>& slope, bool training,
    double eps, std::string_view activation, double negative_slope) {
  const ActivationSpec& spec = spec_of(activation);
  check_params(input, weight, bias, slope, spec);
  const int64_t C = input.size(1);
  check_per_channel(running_mean, input, C, kOp, "running_mean");
  check_per_channel(running_var, input, C, kOp, "running_var");
  // torch.nn.functional.batch_norm's checks, in its order, with its exception type (ValueError) and words.
  if (training) {
    int64_t count = input.size(0);  // values per channel: N * prod(spatial sizes), also with C == 0
    for (int64_t d = 2; d < input.dim(); ++d) count *= input.size(d);
    TORCH_CHECK_VALUE(count != 1, "Expected more than 1 value per channel when training, got input size ",
                      input.sizes());
    TORCH_CHECK_VALUE(!(eps <= 0), "batch_norm eps must be positive during training, but got ", eps);
  } else {
    TORCH_CHECK_VALUE(!(eps < 0), "batch_norm eps must be non-negative, but got ", eps);
  }

  const at::Tensor x = dense_for_kernels(input);
  const Layout l = layout_of(x);
  const auto acc = acc_dtype(x.scalar_type());
  ChannelParams p = channel_params(x, weight, bias, slope, negative_slope);
  if (training && x.numel() == 0) {
    // An empty batch (N == 0 or a zero spatial size) has nothing to normalize: the statistics of no values are
    // taken as mean 0, variance 0 (finite; batch_norm_update_stats ignores them with count 0).
    p.mean = at::zeros({C}, x.options().dtype(acc));
    p.invstd = at::full({C}, 1.0 / std::sqrt(eps), x.options().dtype(acc));
  } else if (training) {
    p.mean = at::empty({C}, x.options().dtype(acc));
    p.invstd = at::empty({C}, x.options().dtype(acc));
  } else {
    const bool given = running_mean.has_value() && running_mean->defined() && running_var.has_value() && running_var->defined();
    TORCH_CHECK(given, kOp, ": running_mean and running_var must be given in evaluation mode (training=False)");
    p.mean = running_mean->to(acc).clone();
    p.invstd = (running_var->to(acc) + eps).rsqrt();
  }
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(x.suggest_memory_format()));
  if (x.numel() > 0) {
    if (training) be.forward_training(x, l, spec.act, eps, p, y);
    else be.normalize_act(x, l, spec.act, p, y);
  }
  return {y, p.mean, p.invstd};
}

at::Tensor apply(const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& weight,
                 const std::optional<at::Tensor>& bias, const at::Tensor& save_mean, const at::Tensor& save_invstd,
                 const std::optional<at::Tensor>& slope, std::string_view activation, double negative_slope) {
  constexpr std::string_view op = "batch_norm_act_apply";
  const ActivationSpec& spec = spec_of(activation);
  check_params(input, weight, bias, slope, spec);
  const int64_t C = input.size(1);
  const auto acc = acc_dtype(input.scalar_type());
  for (const at::Tensor* t : {&save_mean, &save_invstd}) {
    TORCH_CHECK(t->dim() == 1 && t->numel() == C && t->scalar_type() == acc, op, ": save_mean and save_invstd must be ",
                "1-D ", acc, " tensors of ", C, " elements (as batch_norm_act returns them), got ", t->sizes(), " ",
                t->scalar_type());
    check_same_device(*t, input, op, "save_mean / save_invstd", "input");
  }
  const at::Tensor x = dense_for_kernels(input);
  const Layout l = layout_of(x);
  ChannelParams p = channel_params(x, weight, bias, slope, negative_slope);
  p.mean = save_mean.contiguous();
  p.invstd = save_invstd.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(x.suggest_memory_format()));
  if (x.numel() > 0) be.normalize_act(x, l, spec.act, p, y);
  return y;
}

void update_stats(const Backend& be, at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& save_mean,
                  const at::Tensor& save_invstd, double momentum, double eps, int64_t count) {
  constexpr std::string_view op = "batch_norm_update_stats";
  const int64_t C = save_mean.numel();
  check_floating(running_mean, op, "running_mean");
  check_floating(running_var, op, "running_var");
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&running_mean, &running_var, &save_invstd}) {
    TORCH_CHECK(t->numel() == C && t->dim() == 1, op, ": running_mean, running_var, save_mean and save_invstd must be 1-D with ",
                "the same number of elements, got ", t->sizes(), " and ", save_mean.sizes());
    check_same_device(*t, save_mean, op, "running stats and save_invstd", "save_mean");
  }
  TORCH_CHECK(running_mean.scalar_type() == running_var.scalar_type(), op,
              ": running_mean and running_var must have one dtype, got ", running_mean.scalar_type(), " and ",
              running_var.scalar_type());
  TORCH_CHECK(save_mean.scalar_type() == save_invstd.scalar_type() &&
                  (save_mean.scalar_type() == at::kFloat || save_mean.scalar_type() == at::kDouble),
              op, ": save_mean and save_invstd must both be float32 or both float64");
  TORCH_CHECK_VALUE(count == 0 || count > 1, op, ": count (values per channel) must be 0 (an empty batch: nothing ",
                    "is updated) or more than 1, got ", count);
  TORCH_CHECK(running_mean.is_contiguous() && running_var.is_contiguous(), op, ": running stats must be contiguous");
  if (count == 0) return;  // as torch.nn.BatchNorm: an empty batch leaves the running statistics as they are
  be.update_stats(running_mean, running_var, save_mean.contiguous(), save_invstd.contiguous(), momentum, eps, count);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Backend& be, const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output,
    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& slope, const at::Tensor& save_mean, const at::Tensor& save_invstd,
    bool training, std::string_view activation, double negative_slope) {
  const ActivationSpec& spec = spec_of(activation);
  const Act act = spec.act;
  check_params(saved, weight, bias, slope, spec);
  TORCH_CHECK(!(saved_is_output && spec.invertible == When::Never), kOp,
              ": saved_is_output=True needs an invertible activation; ", spec.name, " backward needs the input");
  check_floating(grad_out, kOp, "grad_out");
  check_same_device(grad_out, saved, kOp, "grad_out", "saved");
  TORCH_CHECK(grad_out.sizes() == saved.sizes(), kOp, ": grad_out must have the shape of the saved tensor ",
              saved.sizes(), ", got ", grad_out.sizes());
  const int64_t C = saved.size(1);
  check_per_channel(save_mean, saved, C, kOp, "save_mean");
  check_per_channel(save_invstd, saved, C, kOp, "save_invstd");

  const at::Tensor s = dense_for_kernels(saved);
  const Layout l = layout_of(s);
  // Read grad_out in the saved tensor's layout and dtype (a float32 gradient for a half-precision output is
  // converted first, as bias_act does); never written to.
  const at::Tensor dy = grad_out.to(s.scalar_type()).contiguous(s.suggest_memory_format());
  const auto acc = acc_dtype(s.scalar_type());
  ChannelParams p = channel_params(s, weight, bias, slope, negative_slope);
  p.mean = save_mean.to(acc).contiguous();
  p.invstd = save_invstd.to(acc).contiguous();

  auto vec_opts = s.options().dtype(acc);
  at::Tensor sum_dz = at::zeros({C}, vec_opts), sum_dz_xhat = at::zeros({C}, vec_opts);
  at::Tensor sum_slope = at::zeros({act == Act::Leaky ? C : 0}, vec_opts);
  at::Tensor grad_x = at::empty(s.sizes(), s.options().memory_format(s.suggest_memory_format()));
  if (s.numel() > 0) be.backward(dy, s, saved_is_output, l, act, p, training, sum_dz, sum_dz_xhat, sum_slope, grad_x);

  auto like = [](const at::Tensor& v, const std::optional<at::Tensor>& param) {
    return param.has_value() && param->defined() ? v.to(param->scalar_type()) : v;
  };
  at::Tensor grad_slope = at::empty({0}, vec_opts);
  if (spec.slope == Slope::Learned) grad_slope = like(slope->numel() == 1 ? sum_slope.sum().reshape({1}) : sum_slope, slope);
  return {grad_x, like(sum_dz_xhat, weight), like(sum_dz, bias), grad_slope};
}

namespace {

// The values of a few small tensors, concatenated, as doubles on the host. CPU tensors are read in place; device
// tensors are gathered on the device and copied in one transfer (one synchronisation).
std::vector<double> host_values(const std::vector<at::Tensor>& parts) {
  std::vector<at::Tensor> flat;
  bool on_host = true;
  for (const auto& t : parts) {
    flat.push_back(t.detach().reshape({-1}));
    on_host = on_host && t.is_cpu();
  }
  if (!on_host) {
    for (auto& t : flat) t = t.to(at::kDouble);
    flat = {at::cat(flat).cpu()};
  }
  std::vector<double> v;
  for (const auto& t : flat) {
    const at::Tensor c = t.contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "batch_norm_act_recoverable", [&] {
      const scalar_t* p = c.const_data_ptr<scalar_t>();
      for (int64_t i = 0; i < c.numel(); ++i) v.push_back(static_cast<double>(p[i]));
    });
  }
  return v;
}

}  // namespace

bool recoverable_from_output(const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                             const std::optional<at::Tensor>& slope, std::string_view activation, double negative_slope,
                             at::ScalarType dtype) {
  // Recovery x_hat = (act^-1(y) - bias) / weight multiplies y's rounding error by about 1 + |bias / weight|: allow 65
  // for float32/64 outputs, 2 for float16/bfloat16 ones (their 2x error budget). Weights and slopes must keep y in
  // the normal range of the output dtype: >= sqrt(its smallest normal).
  const ActivationSpec& spec = spec_of(activation);
  if (spec.invertible == When::Never) return false;
  const bool half = dtype == at::kHalf || dtype == at::kBFloat16;
  const double floor = std::sqrt(dtype == at::kHalf ? 6.103515625e-05 : dtype == at::kDouble ? 2.2250738585072014e-308
                                                                                            : 1.1754943508222875e-38);
  const double ratio = half ? 1.0 : 64.0;
  if (spec.slope == Slope::Fixed && !(negative_slope >= floor)) return false;
  const bool check_slope = spec.slope == Slope::Learned && slope.has_value() && slope->defined();
  const bool has_weight = weight.has_value() && weight->defined();
  const bool has_bias = has_weight && bias.has_value() && bias->defined();
  if (!check_slope && !has_weight) return true;
  std::vector<at::Tensor> parts;
  if (has_weight) parts.push_back(*weight);
  if (has_bias) parts.push_back(*bias);
  if (check_slope) parts.push_back(*slope);
  const std::vector<double> v = host_values(parts);
  const int64_t C = has_weight ? weight->numel() : 0;
  for (int64_t c = 0; c < C; ++c) {
    const double w = std::abs(v[c]);
    if (!(w >= floor)) return false;
    if (has_bias && !(std::abs(v[C + c]) <= w * ratio)) return false;
  }
  for (size_t i = static_cast<size_t>((has_weight ? C : 0) + (has_bias ? C : 0)); i < v.size(); ++i)
    if (!(v[i] >= floor)) return false;
  return true;
}

TORCH_LIBRARY_IMPL(pygan, CompositeExplicitAutograd, m) {
  m.impl("batch_norm_act_recoverable", &recoverable_from_output);
}

}  // namespace pygan::bna
