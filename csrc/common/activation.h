#pragma once
// The activations of the fused ops: the table of names and properties (the C++ mirror of the Python spec table,
// pygan/ops/activations.py; same names, order and values), the math the kernels compile, and the dispatch from the
// run-time activation to a compile-time one. Adding an activation: a row of kActivations here (and of the Python
// table); a new kind of math also an Act value, its branches below and a case of dispatch_act.
#include "common/host_device.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>

namespace pygan {

// The math the kernels compile. "leaky_relu" and "prelu" are both Leaky: a fixed slope, or a per-channel / single
// learnable one.
enum class Act { Identity, Relu, Leaky, Tanh, Sigmoid };

// Where the negative-side slope comes from: none, the float argument negative_slope, or a slope tensor of 1 or C
// values.
enum class Slope { None, Fixed, Learned };

// When a property holds: always, never, or only with a positive slope.
enum class When { Always, Never, PositiveSlope };

struct ActivationSpec {
  std::string_view name;
  Act act;
  Slope slope;
  When invertible;               // z is recoverable from y = act(z)
  When output_gives_derivative;  // act'(z) can be computed from y alone
};

inline constexpr auto kActivations = std::to_array<ActivationSpec>({
    {"identity", Act::Identity, Slope::None, When::Always, When::Always},
    {"relu", Act::Relu, Slope::None, When::Never, When::Always},
    {"leaky_relu", Act::Leaky, Slope::Fixed, When::PositiveSlope, When::PositiveSlope},
    {"prelu", Act::Leaky, Slope::Learned, When::PositiveSlope, When::PositiveSlope},
    // Invertible in exact arithmetic, but z recovered from a saturated y (|y| near 1, or y near 0 / 1) is
    // inexact: never, so ops keep their input; the derivative follows from y alone: 1 - y^2, y (1 - y).
    {"tanh", Act::Tanh, Slope::None, When::Never, When::Always},
    {"sigmoid", Act::Sigmoid, Slope::None, When::Never, When::Always},
});

// The row of `name`; an error naming `op` and every activation of the table otherwise.
const ActivationSpec& activation_spec(std::string_view name, std::string_view op);

inline Act parse_activation(std::string_view name, std::string_view op) { return activation_spec(name, op).act; }

// The names of the table as the error messages list them: "'identity', 'relu', ...".
std::string quoted_activation_names();

const char* slope_name(Slope s);  // "none" | "fixed" | "learned"
const char* when_name(When w);    // "always" | "never" | "positive_slope"

// The slope argument of an op: required (1 or C values, as input's channels) by an activation with a learned slope,
// rejected by the others.
void check_slope_arg(const ActivationSpec& spec, const std::optional<at::Tensor>& slope, const at::Tensor& input,
                     std::string_view op);

// Activation math, shared by host and device code. As in PyTorch, z == 0 takes the negative branch's derivative.
// Written with selects between constants (then a multiply) rather than `z > 0 ? z : z * slope`, so compilers
// vectorize them on the CPU: a branch per element mispredicts half the time on real data. All forms are exact.
template <Act A, typename T>
PYGAN_HD T act_derivative(T z, T slope) {
  if constexpr (A == Act::Identity) return T(1);
  else if constexpr (A == Act::Tanh) {
    const T t = std::tanh(z);
    return T(1) - t * t;  // as PyTorch's tanh backward, from the output
  } else if constexpr (A == Act::Sigmoid) {
    const T s = T(1) / (T(1) + std::exp(-z));
    return (T(1) - s) * s;  // as PyTorch's sigmoid backward
  } else {
    const T pos = z > T(0) ? T(1) : T(0);
    if constexpr (A == Act::Relu) return pos;
    else return pos + (T(1) - pos) * slope;  // 1 or slope, exactly
  }
}

template <Act A, typename T>
PYGAN_HD T act_forward(T z, T slope) {
  if constexpr (A == Act::Identity) return z;
  else if constexpr (A == Act::Relu) return z < T(0) ? T(0) : z;  // not z * pos: relu(-inf) is 0; NaN stays NaN
  else if constexpr (A == Act::Tanh) return std::tanh(z);
  else if constexpr (A == Act::Sigmoid) return T(1) / (T(1) + std::exp(-z));
  else return z * act_derivative<A>(z, slope);
}

// act'(z) from the output y = act(z), for activations whose output gives the derivative (for the sign-based ones,
// with a positive slope: y has z's sign).
template <Act A, typename T>
PYGAN_HD T act_derivative_from_output(T y, T slope) {
  if constexpr (A == Act::Tanh) return T(1) - y * y;
  else if constexpr (A == Act::Sigmoid) return (T(1) - y) * y;
  else return act_derivative<A>(y, slope);
}

// act'(z) from a saved value s: the output y when from_output, else z itself.
template <Act A, typename T>
PYGAN_HD T act_derivative_of_saved(T s, T slope, bool from_output) {
  if constexpr (A == Act::Tanh || A == Act::Sigmoid)
    return from_output ? act_derivative_from_output<A>(s, slope) : act_derivative<A>(s, slope);
  else return act_derivative<A>(s, slope);  // the same function of y and of z
}

// Pre-activation from the output; only called for invertible activations (the table's rule: Leaky only with
// slope > 0, so that y and z have the same sign). tanh and sigmoid count as not invertible (see the table):
// never called.
template <Act A, typename T>
PYGAN_HD T act_inverse(T y, T slope) {
  if constexpr (A == Act::Leaky) return y / act_derivative<A>(y, slope);
  else return y;
}

// The PReLU slope's gradient contribution of one element: dy * z where z <= 0, else 0 (NaN stays NaN). A select,
// not dy * (0 or z): where z > 0 the term is 0 whatever dy is (an infinite dy would give inf * 0 = NaN), as in
// the reference's torch.where.
template <typename T>
PYGAN_HD T slope_grad_term(T dy, T z) {
  return z > T(0) ? T(0) : dy * z;
}

// Calls f.template operator()<A>() with the activation as a compile-time constant.
template <typename F>
void dispatch_act(Act act, F&& f) {
  switch (act) {
    case Act::Identity: f.template operator()<Act::Identity>(); break;
    case Act::Relu: f.template operator()<Act::Relu>(); break;
    case Act::Leaky: f.template operator()<Act::Leaky>(); break;
    case Act::Tanh: f.template operator()<Act::Tanh>(); break;
    case Act::Sigmoid: f.template operator()<Act::Sigmoid>(); break;
  }
}

}  // namespace pygan
