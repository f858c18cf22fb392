// Backend-independent part of gan_loss: argument checks and output assembly.
#include "ops/gan_loss/gan_loss.h"

#include "common/checks.h"

#include <ATen/ATen.h>

namespace pygan::gan_loss {

Term parse_term(std::string_view name) {
  if (name == "bce") return Term::Bce;
  if (name == "neg_softplus") return Term::NegSoftplus;
  if (name == "neg_half_exp") return Term::NegHalfExp;
  if (name == "linear") return Term::Linear;
  if (name == "hinge") return Term::Hinge;
  if (name == "squared") return Term::Squared;
  TORCH_CHECK(false, "gan_loss: term must be one of 'bce', 'neg_softplus', 'neg_half_exp', 'linear', 'hinge', "
              "'squared', got '", name, "'");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(Kernel kernel, const at::Tensor& logits, std::string_view term,
                                                       double target, bool mean) {
  const Term t = parse_term(term);
  check_floating(logits, "gan_loss", "logits");
  TORCH_CHECK(logits.numel() > 0, "gan_loss: logits must not be empty, got shape ", logits.sizes());
  TORCH_CHECK(std::isfinite(target), "gan_loss: target must be finite, got ", target);
  const at::Tensor x = logits.contiguous();
  const auto acc = acc_dtype(x.scalar_type());
  at::Tensor grad = at::empty(x.sizes(), x.options());
  at::Tensor loss = at::empty({}, x.options().dtype(acc));
  at::Tensor scores = at::empty({2}, x.options().dtype(acc));
  kernel(x, t, target, mean ? 1.0 / static_cast<double>(x.numel()) : 1.0, grad, loss, scores);
  return {loss, grad, scores};
}

}  // namespace pygan::gan_loss
