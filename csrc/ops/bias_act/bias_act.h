#pragma once
// Per-channel bias + activation: y = act(x + bias[c]) over (N, C, *) input, the epilogue of a convolution whose
// BatchNorm was folded into its weight and bias. Checks and orchestration once in bias_act.cpp; a backend (CPU,
// CUDA) supplies one forward and one backward pass through the `Backend` table.
#include "common/accumulate.h"
#include "common/activation.h"
#include "common/layout.h"

#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>
#include <tuple>

namespace pygan::bias_act {

// Per-channel vectors as the kernels read them: always two contiguous [C] tensors in the accumulation dtype (bias
// zeros when absent; slope the fixed negative slope unless learned, a shared learned slope expanded), so the inner
// loops index plain arrays with unit stride and vectorize.
struct Params {
  at::Tensor bias, slope;
};

struct Backend {
  // y = act(x + bias)
  void (*forward)(const at::Tensor& x, const Layout& l, Act act, const Params& p, at::Tensor& y);
  // With z = saved + bias, or when saved_is_output the output y (act'(z) from y: its sign, or 1 - y^2 for tanh):
  // grad_x = dy * act'(z), and per channel grad_bias = sum(grad_x), grad_slope = sum(dy * z * [z <= 0]) (prelu only; both in acc dtype).
  void (*backward)(const at::Tensor& grad_y, const at::Tensor& saved, bool saved_is_output, const Layout& l, Act act,
                   const Params& p, bool want_slope, at::Tensor& grad_x, at::Tensor& grad_bias, at::Tensor& grad_slope);
};

at::Tensor forward(const Backend& be, const at::Tensor& input, const std::optional<at::Tensor>& bias,
                   const std::optional<at::Tensor>& slope, std::string_view activation, double negative_slope);

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const Backend& be, const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& slope, std::string_view activation,
    double negative_slope);

template <const Backend& be>
at::Tensor forward_op(const at::Tensor& input, const std::optional<at::Tensor>& bias,
                      const std::optional<at::Tensor>& slope, std::string_view activation, double negative_slope) {
  return forward(be, input, bias, slope, activation, negative_slope);
}

template <const Backend& be>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_op(
    const at::Tensor& grad_out, const at::Tensor& saved, bool saved_is_output, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& slope, std::string_view activation, double negative_slope) {
  return backward(be, grad_out, saved, saved_is_output, bias, slope, activation, negative_slope);
}

}  // namespace pygan::bias_act
