"""pygan.ops.gan_loss: a GAN loss term over one tensor of logits, with its gradient, in one kernel.

The kernel reads the logits once and writes the loss, the gradient w.r.t. the logits and the diagnostics a trainer
logs; backward only scales that saved gradient (or, when a graph of the gradient is asked for, differentiates the
reference). The loss family built on it is pygan.losses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pygan import _ext
from pygan.ops import reference
from pygan.ops.op_function import differentiable

OP = "gan_loss"


def gan_loss(logits: Tensor, term: str, target: float = 0.0, reduction: str = "mean") -> tuple[Tensor, Tensor]:
    """(loss, scores): mean or sum over all logits of `term` (reference.GAN_LOSS_TERMS) with `target`, and the
    detached diagnostics scores = [mean sigmoid(logits), mean logits] (tensors: no host synchronisation)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"gan_loss: reduction must be 'mean' or 'sum', got {reduction!r}")
    if term not in reference.GAN_LOSS_TERMS:
        raise ValueError(f"gan_loss: term must be one of {reference.GAN_LOSS_TERMS}, got {term!r}")
    if _ext.has_kernel(OP, logits.device.type):
        loss, _grad, scores = _gan_loss(logits, term, float(target), reduction == "mean")
        return loss, scores
    _ext.fallback(OP, logits.device.type)
    if logits.numel() == 0:
        raise RuntimeError(f"gan_loss: logits must not be empty, got shape {tuple(logits.shape)}")
    values = reference.gan_loss_term(logits.to(reference.acc_dtype(logits.dtype)), term, float(target))
    loss = values.mean() if reduction == "mean" else values.sum()
    x = logits.detach().to(loss.dtype)
    return loss, torch.stack([torch.sigmoid(x).mean(), x.mean()])


def _setup_context(ctx, inputs, output):
    logits, term, target, mean = inputs
    _loss, grad, scores = output
    ctx.mark_non_differentiable(grad, scores)
    ctx.save_for_backward(logits, grad)
    ctx.meta = (term, target, mean)


def _backward(ctx, grad_loss, _grad_grad, _grad_scores):
    logits, grad = ctx.saved_tensors
    if grad_loss is None:
        return None, None, None, None
    if torch.is_grad_enabled():
        # create_graph=True: differentiate the reference, so the gradient itself has a graph.
        term, target, mean = ctx.meta
        x = logits.to(reference.acc_dtype(logits.dtype))
        values = reference.gan_loss_term(x, term, target)
        loss = values.mean() if mean else values.sum()
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        return (g * grad_loss).to(logits.dtype), None, None, None
    return grad * grad_loss.to(grad.dtype), None, None, None


def _fake(logits, term, target, mean):
    if term not in reference.GAN_LOSS_TERMS:
        raise RuntimeError(f"gan_loss: term must be one of {reference.GAN_LOSS_TERMS}, got '{term}'")
    torch._check(logits.dtype.is_floating_point, lambda: f"gan_loss: logits must be a floating-point tensor, got {logits.dtype}")
    torch._check(logits.numel() > 0, lambda: f"gan_loss: logits must not be empty, got shape {tuple(logits.shape)}")
    acc = reference.acc_dtype(logits.dtype)
    return (logits.new_empty((), dtype=acc), torch.empty(logits.shape, dtype=logits.dtype, device=logits.device),
            logits.new_empty((2,), dtype=acc))


if _ext._C is not None:
    torch.library.register_fake("pygan::gan_loss")(_fake)
    torch.library.register_autograd("pygan::gan_loss", _backward, setup_context=_setup_context)
    _gan_loss = differentiable(torch.ops.pygan.gan_loss.default, _setup_context, _backward)
