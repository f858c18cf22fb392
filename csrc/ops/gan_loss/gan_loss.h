#pragma once
// Fused GAN loss: one pass over the discriminator's logits writes the loss (mean or sum of a per-logit term), its
// gradient w.r.t. the logits, and the diagnostics a trainer logs (mean sigmoid(logit), mean logit). The terms are
// those of pygan/ops/reference.py (GAN_LOSS_TERMS), in forms stable for any logit magnitude.
#include "common/accumulate.h"
#include "common/host_device.h"

#include <ATen/core/Tensor.h>

#include <cmath>
#include <string_view>
#include <tuple>

namespace pygan::gan_loss {

enum class Term { Bce, NegSoftplus, NegHalfExp, Linear, Hinge, Squared };

Term parse_term(std::string_view name);

constexpr double kMlExpClamp = 80.0;  // see ML_EXP_CLAMP in reference.py

template <typename T>
PYGAN_HD T softplus(T x) {  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large |x|
  using std::exp, std::fabs, std::log1p;
  return (x > T(0) ? x : T(0)) + log1p(exp(-fabs(x)));
}

template <typename T>
PYGAN_HD T sigmoid(T x) {  // e^-|x| never overflows
  using std::exp, std::fabs;
  const T e = exp(-fabs(x));
  return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// The term's value and derivative at x, for target t.
template <Term K, typename T>
PYGAN_HD void term_at(T x, T t, T& value, T& grad) {
  using std::exp;
  if constexpr (K == Term::Bce) {
    value = softplus(x) - t * x;
    grad = sigmoid(x) - t;
  } else if constexpr (K == Term::NegSoftplus) {
    value = -softplus(x);
    grad = -sigmoid(x);
  } else if constexpr (K == Term::NegHalfExp) {
    const bool clamped = x > T(kMlExpClamp);
    const T e = exp(clamped ? T(kMlExpClamp) : x);
    value = T(-0.5) * e;
    grad = clamped ? T(0) : T(-0.5) * e;
  } else if constexpr (K == Term::Linear) {
    value = t * x;
    grad = t;
  } else if constexpr (K == Term::Hinge) {
    const T m = T(1) + t * x;
    value = m > T(0) ? m : T(0);
    grad = m > T(0) ? t : T(0);
  } else {
    value = T(0.5) * (x - t) * (x - t);
    grad = x - t;
  }
}

template <typename F>
void dispatch_term(Term term, F&& f) {
  switch (term) {
    case Term::Bce: f.template operator()<Term::Bce>(); break;
    case Term::NegSoftplus: f.template operator()<Term::NegSoftplus>(); break;
    case Term::NegHalfExp: f.template operator()<Term::NegHalfExp>(); break;
    case Term::Linear: f.template operator()<Term::Linear>(); break;
    case Term::Hinge: f.template operator()<Term::Hinge>(); break;
    case Term::Squared: f.template operator()<Term::Squared>(); break;
  }
}

// A backend computes, over the contiguous logits: grad = term'(x) * scale, loss = scale * sum term(x) (0-dim) and
// scores = [mean sigmoid(x), mean x] (2 values), loss and scores in the accumulation dtype — all in its own kernels,
// so a loss costs no extra launches.
using Kernel = void (*)(const at::Tensor& logits, Term term, double target, double scale, at::Tensor& grad,
                        at::Tensor& loss, at::Tensor& scores);

// (loss, grad, scores): checks written once, for every backend.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(Kernel kernel, const at::Tensor& logits, std::string_view term,
                                                       double target, bool mean);

template <Kernel kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_op(const at::Tensor& logits, std::string_view term, double target,
                                                          bool mean) {
  return forward(kernel, logits, term, target, mean);
}

}  // namespace pygan::gan_loss
