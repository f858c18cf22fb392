"""pygan.ops.bias_act: per-channel bias + activation in one pass (the epilogue of a convolution whose
BatchNorm was folded into its weight and bias, pygan.fold_bn / eval-mode conv blocks).

Forward reads the input once and writes the output once; backward reads grad_out and one saved tensor. Where the
activation's derivative follows from its output (`output_gives_derivative` in pygan/ops/activations.py: the sign
of the output is that of the pre-activation, or the derivative is a function of the output, 1 - y^2 or y (1 - y))
the output is saved, so the input can be freed; a learned slope keeps the input (its gradient needs the value).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pygan import _ext
from pygan._compat import suggest_memory_format
from pygan.ops import activations, reference
from pygan.ops.fake_checks import check_like_kernel, fake_slope_grad
from pygan.ops.op_function import differentiable

OP = "bias_act"
def bias_act(
    x: Tensor,
    bias: Tensor | None,
    activation: str = "relu",
    negative_slope: float = 0.01,
    slope: Tensor | None = None,
) -> Tensor:
    """act(x + bias.view(1, C, 1, ...)) for (N, C, *) input of float32/64, float16 or bfloat16 (math in fp32 for
    the half types), contiguous or channels_last (the output keeps the memory format).

    activation: a name of the activation table (pygan/ops/activations.py); negative_slope for a fixed slope, slope
    (1 or C values, learnable) for a learned one.
    bias may be None (activation only) and may have another floating dtype than x (e.g. fp32 under autocast).
    """
    activations.get(activation, "bias_act")
    args = (x, bias, slope, activation, float(negative_slope))
    if _ext.has_kernel(OP, x.device.type):
        return _bias_act(*args)
    _ext.fallback(OP, x.device.type)
    return reference.bias_act(*args)


def _fake_forward(input, bias, slope, activation, negative_slope):
    check_like_kernel(OP, input, activation, dict(bias=bias), slope)
    return torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=suggest_memory_format(input))


def _fake_backward(grad_out, saved, saved_is_output, bias, slope, activation, negative_slope):
    check_like_kernel(OP, saved, activation, dict(bias=bias), slope)
    torch._check(grad_out.shape == saved.shape, lambda: "bias_act_backward: grad_out must have the shape of saved")
    C = saved.shape[1]
    acc = reference.acc_dtype(saved.dtype)
    grad_x = torch.empty(saved.shape, dtype=saved.dtype, device=saved.device, memory_format=suggest_memory_format(saved))
    grad_b = saved.new_empty((C,), dtype=bias.dtype if bias is not None else acc)
    return grad_x, grad_b, fake_slope_grad(saved, activation, slope)


def _setup_context(ctx, inputs, output):
    input, bias, slope, activation, negative_slope = inputs
    from_output = activations.output_suffices(activation, negative_slope)
    ctx.save_for_backward(output if from_output else input, bias, slope)
    ctx.meta = (from_output, activation, negative_slope)


def _backward(ctx, grad_y):
    saved, bias, slope = ctx.saved_tensors
    from_output, activation, negative_slope = ctx.meta
    args = (grad_y, saved, from_output, bias, slope, activation, negative_slope)
    if torch.is_grad_enabled():  # create_graph=True: the differentiable formula
        grad_x, grad_b, grad_s = reference.bias_act_backward(*args)
    else:
        grad_x, grad_b, grad_s = torch.ops.pygan.bias_act_backward(*args)
    need = ctx.needs_input_grad
    return (grad_x if need[0] else None, grad_b if need[1] else None, grad_s if need[2] else None, None, None)


if _ext._C is not None:
    torch.library.register_fake("pygan::bias_act")(_fake_forward)
    torch.library.register_fake("pygan::bias_act_backward")(_fake_backward)
    torch.library.register_autograd("pygan::bias_act", _backward, setup_context=_setup_context)
    _bias_act = differentiable(torch.ops.pygan.bias_act.default, _setup_context, _backward)
