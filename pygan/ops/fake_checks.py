"""The argument checks the C++ ops share (csrc/common/checks.h and each op's check_args), mirrored in Python for
their fake implementations (torch.compile / meta tensors), with the same messages — so a traced call fails the way
the kernel would."""

from __future__ import annotations

import torch
from torch import Tensor

from pygan._compat import batch_norm_eps_error
from pygan.ops import activations
from pygan.ops.reference import acc_dtype


def check_like_kernel(op: str, input: Tensor, activation: str, per_channel: dict[str, Tensor | None],
                      slope: Tensor | None) -> None:
    """input: (N, C, *) floating; per_channel: optional 1-D tensors of C values; slope: 1 or C values, required by
    and only allowed with a learned-slope activation; every tensor on input's device."""
    if activation not in activations.ACTIVATIONS:
        names = ", ".join(f"'{n}'" for n in activations.NAMES)
        raise RuntimeError(f"{op}: activation must be one of {names}, got '{activation}'")
    torch._check(input.dim() >= 2, lambda: f"{op}: input must have at least 2 dimensions (N, C, *), got shape {tuple(input.shape)}")
    torch._check(input.dtype.is_floating_point, lambda: f"{op}: input must be a floating-point tensor (float32, float64, float16 or bfloat16), got {input.dtype}")
    C = input.shape[1]
    for name, t in (*per_channel.items(), ("slope", slope)):
        if t is not None and t.device != input.device:
            raise RuntimeError(f"{op}: {name} must be on the same device as input ({input.device}), got {t.device}")
    for name, t in per_channel.items():
        if t is not None:
            torch._check(t.dim() == 1 and t.shape[0] == C,
                         lambda: f"{op}: {name} must be a 1-D tensor with {C} elements (one per channel of input, dim 1), got shape {tuple(t.shape)}")
    if activations.get(activation).learned_slope:
        torch._check(slope is not None, lambda: f"{op}: activation='{activation}' needs slope (1 or C elements)")
        torch._check(slope.dim() == 1 and slope.shape[0] in (1, C),
                     lambda: f"{op}: slope must be a 1-D tensor with {C} elements or a single element (one per channel of input, dim 1), got shape {tuple(slope.shape)}")
    elif slope is not None:
        raise RuntimeError(f"{op}: slope is only used with activation={activations.learned_slope_names()}, "
                           f"got activation='{activation}'")


def fake_slope_grad(saved: Tensor, activation: str, slope: Tensor | None) -> Tensor:
    """The slope gradient a backward kernel returns: slope's size for a learned slope, else empty."""
    if activations.get(activation).learned_slope:
        return saved.new_empty((slope.numel(),), dtype=slope.dtype)
    return saved.new_empty((0,), dtype=acc_dtype(saved.dtype))


def check_batch_norm_args(size: torch.Size, training: bool, eps: float, batch: bool = True, *,
                          as_stock: bool = False) -> None:
    """torch.nn.functional.batch_norm's checks, in its order, with its exception type and messages: in training,
    more than one value per channel (none is fine: an empty batch) unless batch=False; then eps. The eps rule is
    the C++ op's (eps > 0 in training, eps >= 0 otherwise: that of torch >= 2.13), or with as_stock=True that of
    the installed torch (pygan's Python functions and modules, drop-in for the stock ones)."""
    if training and batch:
        count = size[0]
        for s in size[2:]:
            count = count * s
        if count == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")
    if as_stock:
        message = batch_norm_eps_error(eps, training)
        if message is not None:
            raise ValueError(message)
    elif training and eps <= 0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    elif not training and eps < 0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
