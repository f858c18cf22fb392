"""pygan.ops.instance_norm_act: instance normalization, an optional residual add and an activation, fused.

y = act(weight * (x - mean_nc) * invstd_nc + bias [+ residual]), statistics per sample and channel over the spatial
dims, as torch.nn.InstanceNorm{1,2,3}d followed by the add and the activation. Forward is a statistics pass and a
normalize-and-activate pass per plane, backward a reduction and an input-gradient pass per plane; on the CPU a task
owns whole planes, so a plane that fits in cache is read from memory once per direction.

What backward keeps: without a residual and with an invertible activation (`invertible` in the table,
pygan/ops/activations.py) only the output, the normalized input recovered from it as in batch_norm_act (same
accuracy rule: pygan.ops.batch_norm_act.can_recover_from_output); otherwise the input, plus the residual when the
activation's derivative needs the pre-activation (any activation but identity).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pygan import _ext
from pygan._compat import suggest_memory_format
from pygan.ops import activations, reference
from pygan.ops.batch_norm_act import can_recover_from_output
from pygan.ops.fake_checks import check_like_kernel, fake_slope_grad
from pygan.ops.op_function import differentiable

OP = "instance_norm_act"


def instance_norm_act(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    activation: str = "identity",
    negative_slope: float = 0.01,
    slope: Tensor | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    """act(F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps) + residual).

    Arguments as torch.nn.functional.instance_norm, plus `activation` (a name of the activation table,
    pygan/ops/activations.py), `negative_slope` (a fixed slope), `slope` (a learned slope: 1 or C values,
    learnable) and `residual` (input's shape, added before the activation). With use_input_stats the running
    statistics, when given, are updated in place as stock does (the mean over the batch of the per-sample
    statistics, unbiased variance); without it they normalize. (N, C, *) input of float32/64, float16 or bfloat16
    (statistics in float32), contiguous or channels_last; the output keeps the memory format.
    """
    activations.get(activation, OP)
    if use_input_stats:
        if math.prod(input.shape[2:]) == 1:  # as torch.nn.functional.instance_norm
            raise ValueError(f"Expected more than 1 spatial element when training, got input size {input.size()}")
    elif running_mean is None or running_var is None:
        raise ValueError(f"{OP}: running_mean and running_var must be given when use_input_stats=False")
    kernels = _ext.has_kernel(OP, input.device.type)
    if not kernels:
        _ext.fallback(OP, input.device.type)
    if not use_input_stats:
        acc = reference.acc_dtype(input.dtype)
        shape = (input.shape[0], input.shape[1])
        mean = running_mean.detach().to(acc).expand(shape).contiguous()
        invstd = (running_var.detach().to(acc) + eps).rsqrt().expand(shape).contiguous()
        args = (input, weight, bias, residual, mean, invstd, slope, activation, float(negative_slope))
        return _instance_norm_act_apply(*args) if kernels else reference.instance_norm_act_apply(*args)
    args = (input, weight, bias, residual, slope, float(eps), activation, float(negative_slope))
    y, mean, invstd = _instance_norm_act(*args) if kernels else reference.instance_norm_act(*args)
    if running_mean is not None and running_var is not None:
        update_running_stats(running_mean, running_var, mean, invstd, momentum, eps, input.numel() // max(1, input.shape[0] * input.shape[1]))
    return y


def update_running_stats(running_mean: Tensor, running_var: Tensor, mean: Tensor, invstd: Tensor, momentum: float,
                         eps: float, count: int) -> None:
    """In place, as torch.nn.functional.instance_norm: running = (1 - momentum) * running + momentum * the batch mean
    of the per-sample statistics (variance unbiased: (1 / invstd^2 - eps) * count / (count - 1))."""
    with torch.no_grad():
        var = (invstd.detach().double().pow(-2) - eps) * (count / (count - 1))
        running_mean.mul_(1 - momentum).add_(mean.detach().mean(0).to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_(var.mean(0).to(running_var.dtype), alpha=momentum)


def _needs_residual(activation: str) -> bool:
    """Whether backward reads the residual: act'(z) depends on z for every activation but identity."""
    return activation != "identity"


def _x_hat(saved, from_output, weight, bias, slope, mean, invstd, activation, negative_slope):
    nd, acc = saved.dim(), reference.acc_dtype(saved.dtype)
    if from_output:
        view = lambda v: v.to(acc).reshape([1, -1] + [1] * (nd - 2))  # noqa: E731
        sl = view(slope) if activations.get(activation).learned_slope else negative_slope
        z = reference.activation_inverse(saved.to(acc), activation, sl)
        return (z - (view(bias) if bias is not None else 0)) / (view(weight) if weight is not None else 1)
    plane = lambda v: v.to(acc).reshape(list(v.shape) + [1] * (nd - 2))  # noqa: E731
    return (saved.to(acc) - plane(mean)) * plane(invstd)


def _stat_input_grad(x_hat, invstd, grad_mean, grad_invstd, dtype):
    """Input gradient through the returned statistics: d mean / dx = 1/S, d invstd / dx = -invstd^2 * x_hat / S."""
    nd = x_hat.dim()
    plane = lambda v: v.reshape(list(v.shape) + [1] * (nd - 2))  # noqa: E731
    count = x_hat[0, 0].numel()
    grad = torch.zeros_like(x_hat)
    if grad_mean is not None:
        grad = grad + plane(grad_mean) / count
    if grad_invstd is not None:
        grad = grad - plane(grad_invstd * invstd * invstd) * x_hat / count
    return grad.to(dtype)


def _save(ctx, input, y, weight, bias, residual, slope, mean, invstd, activation, negative_slope, training):
    from_output = training and residual is None and can_recover_from_output(
        activation, negative_slope, weight, bias, slope, input.dtype)
    keep_residual = residual if residual is not None and _needs_residual(activation) else None
    ctx.save_for_backward(y if from_output else input, keep_residual, weight, bias, slope, mean, invstd)
    ctx.meta = (from_output, residual is not None, training, activation, negative_slope)
    ctx.set_materialize_grads(False)


def _grads(ctx, grad_y):
    saved, residual, weight, bias, slope, mean, invstd = ctx.saved_tensors
    from_output, has_residual, training, activation, negative_slope = ctx.meta
    if grad_y is None:
        grad_y = torch.zeros_like(saved)
    args = (grad_y, saved, from_output, residual, weight, bias, slope, mean, invstd, training, activation,
            negative_slope)
    if torch.is_grad_enabled():  # create_graph=True: the differentiable formula
        grad_x, grad_w, grad_b, grad_s, grad_r = reference.instance_norm_act_backward(*args)
    else:
        grad_x, grad_w, grad_b, grad_s, grad_r = torch.ops.pygan.instance_norm_act_backward(*args)
    if has_residual and residual is None:  # identity: the residual's gradient is grad_out itself
        grad_r = grad_y
    return grad_x, grad_w, grad_b, grad_s, grad_r if has_residual else None


def _setup_context(ctx, inputs, output):
    input, weight, bias, residual, slope, _eps, activation, negative_slope = inputs
    y, mean, invstd = output
    _save(ctx, input, y, weight, bias, residual, slope, mean, invstd, activation, negative_slope, True)


def _backward(ctx, grad_y, grad_mean, grad_invstd):
    grad_x, grad_w, grad_b, grad_s, grad_r = _grads(ctx, grad_y)
    if grad_mean is not None or grad_invstd is not None:
        saved, _r, weight, bias, slope, mean, invstd = ctx.saved_tensors
        from_output, _, _, activation, negative_slope = ctx.meta
        x_hat = _x_hat(saved, from_output, weight, bias, slope, mean, invstd, activation, negative_slope)
        grad_x = grad_x + _stat_input_grad(x_hat, invstd, grad_mean, grad_invstd, saved.dtype)
    need = ctx.needs_input_grad
    return (grad_x if need[0] else None, grad_w if need[1] else None, grad_b if need[2] else None,
            grad_r if need[3] else None, grad_s if need[4] else None, None, None, None)


def _setup_context_apply(ctx, inputs, output):
    input, weight, bias, residual, mean, invstd, slope, activation, negative_slope = inputs
    _save(ctx, input, output, weight, bias, residual, slope, mean, invstd, activation, negative_slope, False)


def _backward_apply(ctx, grad_y):
    grad_x, grad_w, grad_b, grad_s, grad_r = _grads(ctx, grad_y)
    need = ctx.needs_input_grad
    return (grad_x if need[0] else None, grad_w if need[1] else None, grad_b if need[2] else None,
            grad_r if need[3] else None, None, None, grad_s if need[6] else None, None, None)


def _check_residual(input, residual):
    if residual is None:
        return
    if residual.device != input.device:
        raise RuntimeError(f"{OP}: residual must be on the same device as input ({input.device}), got {residual.device}")
    torch._check(residual.shape == input.shape,
                 lambda: f"{OP}: residual must have input's shape {tuple(input.shape)}, got {tuple(residual.shape)}")


def _fake_out(input):
    return torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=suggest_memory_format(input))


def _fake_forward(input, weight, bias, residual, slope, eps, activation, negative_slope):
    check_like_kernel(OP, input, activation, dict(weight=weight, bias=bias), slope)
    _check_residual(input, residual)
    torch._check(math.prod(input.shape[2:]) != 1 or input.numel() == 0,
                 lambda: f"{OP}: Expected more than 1 spatial element when training, got input size {tuple(input.shape)}")
    stats = input.new_empty((input.shape[0], input.shape[1]), dtype=reference.acc_dtype(input.dtype))
    return _fake_out(input), stats, torch.empty_like(stats)


def _fake_apply(input, weight, bias, residual, save_mean, save_invstd, slope, activation, negative_slope):
    check_like_kernel("instance_norm_act_apply", input, activation, dict(weight=weight, bias=bias), slope)
    _check_residual(input, residual)
    return _fake_out(input)


def _fake_backward(grad_out, saved, saved_is_output, residual, weight, bias, slope, save_mean, save_invstd, training,
                   activation, negative_slope):
    check_like_kernel(OP, saved, activation, dict(weight=weight, bias=bias), slope)
    torch._check(grad_out.shape == saved.shape, lambda: f"{OP}: grad_out must have the shape of the saved tensor")
    C = saved.shape[1]
    acc = reference.acc_dtype(saved.dtype)
    grad_w = saved.new_empty((C,), dtype=weight.dtype if weight is not None else acc)
    grad_b = saved.new_empty((C,), dtype=bias.dtype if bias is not None else acc)
    grad_r = _fake_out(saved) if residual is not None else saved.new_empty((0,))
    return _fake_out(saved), grad_w, grad_b, fake_slope_grad(saved, activation, slope), grad_r


if _ext._C is not None and hasattr(torch.ops.pygan, OP):
    torch.library.register_fake("pygan::instance_norm_act")(_fake_forward)
    torch.library.register_fake("pygan::instance_norm_act_apply")(_fake_apply)
    torch.library.register_fake("pygan::instance_norm_act_backward")(_fake_backward)
    torch.library.register_autograd("pygan::instance_norm_act", _backward, setup_context=_setup_context)
    torch.library.register_autograd("pygan::instance_norm_act_apply", _backward_apply,
                                    setup_context=_setup_context_apply)
    _instance_norm_act = differentiable(torch.ops.pygan.instance_norm_act.default, _setup_context, _backward)
    _instance_norm_act_apply = differentiable(torch.ops.pygan.instance_norm_act_apply.default, _setup_context_apply,
                                              _backward_apply)
