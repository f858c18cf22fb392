"""pygan.ops.batch_norm_act: batch normalization followed by an activation, fused.

Forward is one statistics pass and one normalize-and-activate pass; backward one reduction pass and one
input-gradient pass. For invertible activations (`invertible` in pygan/ops/activations.py) only the
output is kept for backward and the normalized input is recovered from it, so the input's memory can be freed
(the In-Place ABN idea) — without changing the parametrization: weight, bias and running stats are those of
torch.nn.BatchNorm2d. When that recovery would be inexact (a weight near zero, a bias large next to its weight, a
tiny slope) the call keeps its input instead; relu always keeps its input.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pygan import _ext
from pygan._compat import dispatch_mode_active, outside_dispatch_modes, suggest_memory_format, tracing
from pygan.ops import recompute
from pygan.ops import activations, reference
from pygan.ops.fake_checks import check_batch_norm_args, check_like_kernel, fake_slope_grad
from pygan.ops.op_function import differentiable

OP = "batch_norm_act"


def batch_norm_act(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    activation: str = "identity",
    negative_slope: float = 0.01,
    slope: Tensor | None = None,
) -> Tensor:
    """act(F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)).

    Arguments as torch.nn.functional.batch_norm, plus `activation` (a name of the activation table,
    pygan/ops/activations.py), `negative_slope` (a fixed slope) and `slope` (a learned slope: a tensor of 1 or C
    values, learnable).
    Running statistics are updated in place when training. Works on (N, C, *) inputs of float32/64, float16
    and bfloat16 (statistics in float32), contiguous or channels_last; the output keeps the memory format.
    """
    activations.get(activation, "batch_norm_act")
    check_batch_norm_args(input.size(), training, eps, as_stock=True)
    args = (input, weight, bias, running_mean, running_var, slope, bool(training), float(eps), activation,
            float(negative_slope))
    kernels = _ext.has_kernel(OP, input.device.type)
    if not kernels:
        _ext.fallback(OP, input.device.type)
    y, mean, invstd = _batch_norm_act(*args) if kernels else reference.batch_norm_act(*args)
    if activation == "relu" and training and kernels and not torch.compiler.is_compiling():
        recompute.offer(y, input, weight, bias, mean, invstd, eps, suggest_memory_format(input))
    if training and running_mean is not None:
        update = torch.ops.pygan.batch_norm_update_stats if kernels else reference.batch_norm_update_stats
        update(running_mean, running_var, mean.detach(), invstd.detach(), float(momentum), float(eps),
               values_per_channel(input))
    return y


def values_per_channel(input: Tensor) -> int:
    """N * prod(spatial sizes): the count the statistics are taken over (0 for an empty batch)."""
    return input.numel() // input.shape[1] if input.shape[1] else 0


def can_recover_from_output(
    activation: str, negative_slope: float, weight: Tensor | None, bias: Tensor | None, slope: Tensor | None,
    dtype: torch.dtype,
) -> bool:
    """Whether backward can recover x_hat = (act^-1(y) - bias) / weight from the output y accurately.

    Recovery multiplies the output's rounding error by about 1 + |bias / weight|: allowed up to 65 for
    float32/64 outputs, 2 for float16/bfloat16 ones (the 2x error budget of half-precision results). Weights and
    slopes must keep y in the normal floating-point range: >= sqrt(smallest normal) of the output dtype. relu is
    never invertible. On a GPU this reads the parameters back: one host synchronisation per call. While tracing
    (torch.compile, fake tensors) the data cannot be read: False.
    """
    if activations.get(activation).invertible == "never":
        return False
    if tracing(weight, bias, slope):
        return False
    args = (weight, bias, slope, activation, float(negative_slope), dtype)
    if not dispatch_mode_active():
        return torch.ops.pygan.batch_norm_act_recoverable(*args)
    # Real tensors: read them as they are, past any dispatch mode (e.g. opcheck's cross-checking fake mode).
    with outside_dispatch_modes():
        return torch.ops.pygan.batch_norm_act_recoverable(*args)


def _stat_input_grad(saved, saved_is_output, weight, bias, slope, mean, invstd, activation, negative_slope,
                     grad_mean, grad_invstd):
    """Input gradient flowing through the returned batch statistics (used when double backward differentiates
    through save_mean / save_invstd): d mean / dx = 1/M, d invstd / dx = -invstd^2 * x_hat / M."""
    nd, acc = saved.dim(), reference.acc_dtype(saved.dtype)
    view = lambda v: v.to(acc).reshape([1, -1] + [1] * (nd - 2))  # noqa: E731
    if saved_is_output:
        s = saved.to(acc)
        learned = activations.get(activation).learned_slope
        z = reference.activation_inverse(s, activation, view(slope) if learned else negative_slope)
        x_hat = (z - (view(bias) if bias is not None else 0)) / (view(weight) if weight is not None else 1)
    else:
        x_hat = (saved.to(acc) - view(mean)) * view(invstd)
    count = values_per_channel(saved)
    grad = torch.zeros_like(x_hat)
    if grad_mean is not None:
        grad = grad + view(grad_mean) / count
    if grad_invstd is not None:
        grad = grad - view(grad_invstd * invstd * invstd) * x_hat / count
    return grad.to(saved.dtype)


def _setup_context(ctx, inputs, output):
    input, weight, bias, _rm, _rv, slope, training, _eps, activation, negative_slope = inputs
    y, mean, invstd = output
    from_output = can_recover_from_output(activation, negative_slope, weight, bias, slope, input.dtype)
    ctx.save_for_backward(y if from_output else input, weight, bias, slope, mean, invstd)
    ctx.meta = (from_output, training, activation, negative_slope)
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_y, grad_mean, grad_invstd):
    saved, weight, bias, slope, mean, invstd = ctx.saved_tensors
    from_output, training, activation, negative_slope = ctx.meta
    if grad_y is None:
        grad_y = torch.zeros_like(saved)
    args = (grad_y, saved, from_output, weight, bias, slope, mean, invstd, training, activation, negative_slope)
    if torch.is_grad_enabled():
        # create_graph=True: a differentiable formula, so gradient penalties can differentiate through it.
        grad_x, grad_w, grad_b, grad_s = reference.batch_norm_act_backward(*args)
    else:
        grad_x, grad_w, grad_b, grad_s = torch.ops.pygan.batch_norm_act_backward(*args)
    if training and (grad_mean is not None or grad_invstd is not None):
        grad_x = grad_x + _stat_input_grad(saved, from_output, weight, bias, slope, mean, invstd, activation,
                                           negative_slope, grad_mean, grad_invstd)
    need = ctx.needs_input_grad
    return (
        grad_x if need[0] else None,
        grad_w if need[1] else None,
        grad_b if need[2] else None,
        None,
        None,
        grad_s if need[5] else None,
        None, None, None, None,
    )


def _fake_forward(input, weight, bias, running_mean, running_var, slope, training, eps, activation, negative_slope):
    check_like_kernel(OP, input, activation, dict(weight=weight, bias=bias, running_mean=running_mean,
                                                 running_var=running_var), slope)
    check_batch_norm_args(input.shape, training, eps)
    C = input.shape[1]
    stats = input.new_empty((C,), dtype=reference.acc_dtype(input.dtype))
    out = torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=suggest_memory_format(input))
    return out, stats, torch.empty_like(stats)


def _fake_backward(grad_out, saved, saved_is_output, weight, bias, slope, save_mean, save_invstd, training,
                   activation, negative_slope):
    check_like_kernel(OP, saved, activation, dict(weight=weight, bias=bias), slope)
    torch._check(grad_out.shape == saved.shape, lambda: "batch_norm_act: grad_out must have the shape of saved")
    C = saved.shape[1]
    acc = reference.acc_dtype(saved.dtype)
    grad_x = torch.empty(saved.shape, dtype=saved.dtype, device=saved.device, memory_format=suggest_memory_format(saved))
    grad_w = saved.new_empty((C,), dtype=weight.dtype if weight is not None else acc)
    grad_b = saved.new_empty((C,), dtype=bias.dtype if bias is not None else acc)
    return grad_x, grad_w, grad_b, fake_slope_grad(saved, activation, slope)


def _fake_apply(input, weight, bias, save_mean, save_invstd, slope, activation, negative_slope):
    check_like_kernel("batch_norm_act_apply", input, activation, dict(weight=weight, bias=bias, save_mean=save_mean,
                                                                      save_invstd=save_invstd), slope)
    return torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=suggest_memory_format(input))


def _fake_update_stats(running_mean, running_var, save_mean, save_invstd, momentum, eps, count):
    reference.check_update_count(count)


if _ext._C is not None:
    torch.library.register_fake("pygan::batch_norm_act")(_fake_forward)
    torch.library.register_fake("pygan::batch_norm_update_stats")(_fake_update_stats)
    torch.library.register_fake("pygan::batch_norm_act_apply")(_fake_apply)
    torch.library.register_fake("pygan::batch_norm_act_backward")(_fake_backward)
    torch.library.register_autograd("pygan::batch_norm_act", _backward, setup_context=_setup_context)
    _batch_norm_act = differentiable(torch.ops.pygan.batch_norm_act.default, _setup_context, _backward)
