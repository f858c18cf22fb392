"""The GAN loss family, on raw logits (no sigmoid in the models), each side one fused kernel (pygan.ops.gan_loss).

Kinds (`kind=`):
  minimax         D maximizes log D(x) + log(1 - D(G(z))); G minimizes log(1 - D(G(z))) (saturating)
  non_saturating  same D; G maximizes log D(G(z))
  max_likelihood  same D; G cost -1/2 E[exp(logit)] = -1/2 E[exp(sigmoid^-1(D(G(z))))]
  wasserstein     critic: E[f(fake)] - E[f(real)]; G: -E[f(fake)]
  hinge           D: E[relu(1 - f(real))] + E[relu(1 + f(fake))]; G: -E[f(fake)]
  least_squares   D: 1/2 E[(f(real) - 1)^2] + 1/2 E[f(fake)^2]; G: 1/2 E[(f(fake) - 1)^2]
The D losses are written as minimised quantities (the negative of what D maximises).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pygan.ops.gan_loss import gan_loss

LOSS_KINDS = ("minimax", "non_saturating", "max_likelihood", "wasserstein", "hinge", "least_squares")
PROBABILISTIC = ("minimax", "non_saturating", "max_likelihood")


@dataclass(frozen=True)
class LossResult:
    """loss: the scalar to minimise. real_score / fake_score: detached mean D(x) / D(G(z)) — probabilities for the
    probabilistic kinds, raw scores otherwise — as tensors (reading them is the caller's choice of host sync)."""

    loss: Tensor
    real_score: Tensor | None
    fake_score: Tensor | None


def _check_kind(kind: str) -> None:
    if kind not in LOSS_KINDS:
        raise ValueError(f"kind must be one of {LOSS_KINDS}, got {kind!r}")


def _score(scores: Tensor, kind: str) -> Tensor:
    return scores[0] if kind in PROBABILISTIC else scores[1]


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, kind: str = "non_saturating",
                       label_smoothing: float = 0.0, reduction: str = "mean") -> LossResult:
    """D's loss on its logits for real and generated samples. label_smoothing: one-sided, on the real targets
    (0.1 makes the real label 0.9); for the probabilistic kinds and least_squares."""
    _check_kind(kind)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if label_smoothing and kind in ("wasserstein", "hinge"):
        raise ValueError(f"label_smoothing has no meaning for kind={kind!r} (no labels); use 0")
    real_label = 1.0 - label_smoothing
    real_term, fake_term = {
        "wasserstein": (("linear", -1.0), ("linear", 1.0)),
        "hinge": (("hinge", -1.0), ("hinge", 1.0)),
        "least_squares": (("squared", real_label), ("squared", 0.0)),
    }.get(kind, (("bce", real_label), ("bce", 0.0)))
    real_loss, real_scores = gan_loss(real_logits, *real_term, reduction=reduction)
    fake_loss, fake_scores = gan_loss(fake_logits, *fake_term, reduction=reduction)
    return LossResult(real_loss + fake_loss, _score(real_scores, kind), _score(fake_scores, kind))


_GENERATOR_TERMS = {
    "minimax": ("neg_softplus", 0.0),
    "non_saturating": ("bce", 1.0),
    "max_likelihood": ("neg_half_exp", 0.0),
    "wasserstein": ("linear", -1.0),
    "hinge": ("linear", -1.0),
    "least_squares": ("squared", 1.0),
}


def generator_loss(fake_logits: Tensor, kind: str = "non_saturating", reduction: str = "mean") -> LossResult:
    """G's loss on D's logits for generated samples."""
    _check_kind(kind)
    loss, scores = gan_loss(fake_logits, *_GENERATOR_TERMS[kind], reduction=reduction)
    return LossResult(loss, None, _score(scores, kind))


def _call(discriminator, x: Tensor, labels: Tensor | None) -> Tensor:
    return discriminator(x) if labels is None else discriminator(x, labels)


def _input_grad(discriminator, x: Tensor, labels: Tensor | None) -> Tensor:
    x = x.detach().requires_grad_(True)
    out = _call(discriminator, x, labels)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(discriminator, real: Tensor, fake: Tensor, weight: float = 10.0, labels: Tensor | None = None,
                     target_norm: float = 1.0, alpha: Tensor | None = None) -> Tensor:
    """WGAN-GP: weight * E[(||grad_x D(x)|| - target_norm)^2] at random interpolates x of real and fake samples
    (one mixing weight per sample, drawn from torch's global generator unless given as `alpha`, N values
    — a trainer passes its own for reproducible resumes). Differentiable w.r.t. D's parameters (double backward).
    labels, if given, are passed to a conditional D as D(x, labels)."""
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    shape = [real.shape[0]] + [1] * (real.dim() - 1)
    if alpha is None:
        alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    elif alpha.numel() == real.shape[0] and alpha.dim() in (1, real.dim()):
        alpha = alpha.reshape(shape).to(real.dtype)
    else:
        raise ValueError(f"gradient_penalty: alpha must have {real.shape[0]} values (one per sample), got shape {tuple(alpha.shape)}")
    x = alpha * real.detach() + (1 - alpha) * fake.detach()
    grad = _input_grad(discriminator, x, labels)
    return weight * ((grad.norm(2, dim=1) - target_norm) ** 2).mean()


def r1_penalty(discriminator, real: Tensor, weight: float = 10.0, labels: Tensor | None = None) -> Tensor:
    """R1: weight / 2 * E[||grad_x D(x)||^2] on real samples. Differentiable w.r.t. D's parameters."""
    grad = _input_grad(discriminator, real, labels)
    return 0.5 * weight * grad.pow(2).sum(dim=1).mean()


__all__ = ["LOSS_KINDS", "LossResult", "discriminator_loss", "generator_loss", "gradient_penalty", "r1_penalty"]
