"""recompute_relu_outputs(): within it, a fused BatchNorm + ReLU output is not kept for backward a second time.

ReLU is not invertible, so the fused op keeps its input x for backward; the next convolution keeps its own input,
the op's output y — two tensors per layer where invertible activations need one. Inside this context, when autograd
saves exactly such an output (same tensor, unmodified) it stores a recipe instead — a reference to x, which is kept
anyway, and the per-channel statistics — and backward recomputes y = relu(x * scale + shift) when it needs it: one
cheap elementwise pass for one tensor of memory per layer, by the forward's own kernel (batch_norm_act_apply), so
the recomputed y is bitwise the one the forward wrote and training results do not change.

A backward that builds a graph (create_graph=True, e.g. gradient penalties) needs y with its history: the recipe
then recomputes the whole batch norm from x differentiably (its statistics too), so higher derivatives stay exact.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from pygan import _ext

_state = threading.local()


class _Recipe:
    __slots__ = ("x", "weight", "bias", "mean", "invstd", "eps", "dtype", "memory_format")

    def recompute(self) -> Tensor:
        nd = self.x.dim()
        view = lambda v: v.reshape([1, -1] + [1] * (nd - 2))  # noqa: E731
        if torch.is_grad_enabled():  # a graph is being built: y as a function of x, statistics included
            y = F.batch_norm(self.x, None, None, self.weight, self.bias, True, 0.0, self.eps)
            return torch.relu(y)
        with torch.no_grad():
            if _ext.has_kernel("batch_norm_act_apply", self.x.device.type):
                # the forward's own normalize-and-activate kernel: y bitwise as the forward wrote it, one launch
                return torch.ops.pygan.batch_norm_act_apply(self.x, self.weight, self.bias, self.mean, self.invstd,
                                                            None, "relu", 0.0)
            scale = self.invstd if self.weight is None else self.invstd * self.weight.to(self.invstd.dtype)
            shift = -self.mean * scale
            if self.bias is not None:
                shift = shift + self.bias.to(shift.dtype)
            z = self.x.to(scale.dtype) * view(scale) + view(shift)
            return torch.relu(z).to(self.dtype).contiguous(memory_format=self.memory_format)


def _registry() -> dict | None:
    return getattr(_state, "registry", None)


def offer(y: Tensor, x: Tensor, weight, bias, mean: Tensor, invstd: Tensor, eps: float, memory_format) -> None:
    """Called by the fused ReLU op: y may be recomputed from x if autograd saves it inside the context."""
    registry = _registry()
    if registry is None or not y.requires_grad:
        return
    recipe = _Recipe()
    recipe.x, recipe.weight, recipe.bias = x, weight, bias
    recipe.mean, recipe.invstd, recipe.eps = mean.detach(), invstd.detach(), eps
    recipe.dtype, recipe.memory_format = y.dtype, memory_format
    key = id(y)
    # The entry dies with y (so a long-lived context holds nothing extra); the ref also proves identity in _pack.
    registry[key] = (weakref.ref(y, lambda _, r=registry, k=key: r.pop(k, None)), y._version, recipe)


def pack(t: Tensor):
    """The saved-tensor pack hook: a recipe for an offered output, anything else as it is."""
    registry = _registry()
    entry = registry.get(id(t)) if registry is not None else None
    if entry is not None and entry[0]() is t and t._version == entry[1]:
        return entry[2]
    return t


def unpack(saved):
    """The saved-tensor unpack hook."""
    return saved.recompute() if isinstance(saved, _Recipe) else saved


@contextmanager
def recompute_relu_outputs():
    """Forward passes inside this context save one tensor per fused BatchNorm + ReLU layer instead of two."""
    outer = _registry()
    _state.registry = {} if outer is None else outer
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield
    finally:
        _state.registry = outer
