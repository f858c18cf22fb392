"""Pure-PyTorch versions of every fused op, with the same signatures as the torch.ops.pygan operators.

They are the specification (read these to know what a kernel computes), the oracle of the tests (evaluated in
float64), and the documented fallback when a compiled kernel is missing (see pygan._ext). Differentiable
throughout, so autograd (and double backward) works through them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pygan.ops import activations



def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 for float64 data, float32 otherwise (fp16/bf16 statistics in fp32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _channel_view(v: Tensor, ndim: int) -> Tensor:
    return v.reshape([1, -1] + [1] * (ndim - 2))


def _reduce_dims(ndim: int) -> list[int]:
    return [0] + list(range(2, ndim))


def _slope_view(activation: str, slope: Tensor | None, negative_slope: float, ndim: int, dtype: torch.dtype):
    if activations.get(activation).learned_slope:
        return _channel_view(slope.to(dtype), ndim)
    return negative_slope


def activation_forward(z: Tensor, activation: str, slope, negative_slope: float = 0.01) -> Tensor:
    """act(z); for prelu, `slope` broadcasts against z (per channel or one value)."""
    act = activations.get(activation)
    return act.forward(z, negative_slope if act.slope == "fixed" else slope)


def activation_inverse(y: Tensor, activation: str, slope) -> Tensor:
    """z from y = act(z) for the invertible activations (the table's `invertible`)."""
    act = activations.get(activation)
    if act.inverse is None:
        raise ValueError(f"{activation} is not invertible")
    return act.inverse(y, slope)


def activation_derivative(z: Tensor, activation: str, slope) -> Tensor:
    """d act / dz; at z == 0 the negative branch's value, as PyTorch's kernels."""
    return activations.get(activation).derivative(z, slope)


def _slope_grad(activation: str, z: Tensor, gy: Tensor, slope: Tensor | None, dims, like: Tensor) -> Tensor:
    """Gradient of a learned slope: sum of gy * z where z <= 0 (per channel, or one value); empty otherwise."""
    if not activations.get(activation).learned_slope:
        return like.new_empty(0)
    grad = torch.where(z > 0, torch.zeros_like(z), gy * z).sum(dims)
    return (grad.sum().reshape(1) if slope.numel() == 1 else grad).to(slope.dtype)


def batch_norm_act(
    input: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    slope: Tensor | None,
    training: bool,
    eps: float,
    activation: str,
    negative_slope: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """act(BatchNorm(input)), as torch.nn.BatchNorm{1,2,3}d followed by the activation.

    training: normalize with the batch statistics (biased variance); otherwise with the running statistics.
    Returns (out, save_mean, save_invstd): the statistics used, in the accumulation dtype; out has input's dtype.
    An empty batch in training gives an empty out and the statistics mean 0, variance 0.
    Running statistics are not touched here: see batch_norm_update_stats.
    """
    activations.get(activation, "batch_norm_act")
    nd, acc = input.dim(), acc_dtype(input.dtype)
    x = input.to(acc)
    if training and x.numel() == 0:
        mean = var = x.new_zeros(x.shape[1])
    elif training:
        dims = _reduce_dims(nd)
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
    else:
        mean, var = running_mean.to(acc).clone(), running_var.to(acc)
    invstd = torch.rsqrt(var + eps)
    return batch_norm_act_apply(input, weight, bias, mean, invstd, slope, activation, negative_slope), mean, invstd


def batch_norm_act_apply(
    input: Tensor, weight: Tensor | None, bias: Tensor | None, save_mean: Tensor, save_invstd: Tensor,
    slope: Tensor | None, activation: str, negative_slope: float,
) -> Tensor:
    """act(BatchNorm(input)) with the given statistics (as batch_norm_act returned them), in input's dtype."""
    nd, acc = input.dim(), acc_dtype(input.dtype)
    x_hat = (input.to(acc) - _channel_view(save_mean.to(acc), nd)) * _channel_view(save_invstd.to(acc), nd)
    return _affine_act(x_hat, weight, bias, None, slope, activation, negative_slope, input.dtype)


def _affine_act(x_hat: Tensor, weight, bias, residual, slope, activation: str, negative_slope: float,
                dtype: torch.dtype) -> Tensor:
    """act(weight[c] * x_hat + bias[c] + residual) computed in x_hat's dtype, returned in `dtype`."""
    nd, acc = x_hat.dim(), x_hat.dtype
    z = x_hat * _channel_view(weight.to(acc), nd) if weight is not None else x_hat
    z = z + _channel_view(bias.to(acc), nd) if bias is not None else z
    z = z + residual.to(acc) if residual is not None else z
    y = activation_forward(z, activation, _slope_view(activation, slope, negative_slope, nd, acc), negative_slope)
    return y.to(dtype)


def batch_norm_update_stats(
    running_mean: Tensor, running_var: Tensor, save_mean: Tensor, save_invstd: Tensor, momentum: float, eps: float,
    count: int,
) -> None:
    """In place: running = (1 - momentum) * running + momentum * batch, as torch.nn.BatchNorm; the batch variance
    is recovered from save_invstd and made unbiased: (1 / save_invstd^2 - eps) * count / (count - 1). count 0 (an
    empty batch) leaves them as they are."""
    check_update_count(count)
    if count == 0:
        return
    with torch.no_grad():
        var = (save_invstd.double().pow(-2) - eps) * (count / (count - 1))
        running_mean.mul_(1 - momentum).add_(save_mean.to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum)


def check_update_count(count: int) -> None:
    """batch_norm_update_stats's count: 0 (an empty batch) or more than 1 (the unbiasing divides by count - 1)."""
    if not (count == 0 or count > 1):
        raise ValueError(f"batch_norm_update_stats: count (values per channel) must be 0 (an empty batch: nothing "
                         f"is updated) or more than 1, got {count}")


def _pre_activation(op: str, s: Tensor, saved_is_output: bool, mean, invstd, gamma, beta, residual,
                    activation: str, sl) -> tuple[Tensor, Tensor]:
    """(z, x_hat) from the saved tensor s: the output (z = act^-1(s), x_hat = (z - beta) / gamma) or the input
    (x_hat = (s - mean) * invstd, z = gamma * x_hat + beta + residual); parameters broadcastable, None for absent."""
    if saved_is_output:
        if activations.get(activation).inverse is None:
            raise ValueError(f"{op}: {activation} is not invertible; save the input")
        z = activation_inverse(s, activation, sl)
        shifted = z - beta if beta is not None else z
        return z, shifted / gamma if gamma is not None else shifted
    x_hat = (s - mean) * invstd
    z = x_hat * gamma if gamma is not None else x_hat
    z = z + beta if beta is not None else z
    return (z + residual.to(z.dtype) if residual is not None else z), x_hat


def batch_norm_act_backward(
    grad_out: Tensor,
    saved: Tensor,
    saved_is_output: bool,
    weight: Tensor | None,
    bias: Tensor | None,
    slope: Tensor | None,
    save_mean: Tensor,
    save_invstd: Tensor,
    training: bool,
    activation: str,
    negative_slope: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients of batch_norm_act's `out` w.r.t. (input, weight, bias, slope), given grad_out.

    `saved` is the forward input, or its output when saved_is_output (an invertible activation, as the
    table's `invertible` allows): then the pre-activation is z = act^-1(out) and x_hat = (z - bias) / weight. With
    dz = grad_out * act'(z) and M values per channel:
      grad_input  = weight * invstd * (dz - mean(dz) - x_hat * mean(dz * x_hat))   (training)
                  = weight * invstd * dz                                           (eval)
      grad_weight = sum(dz * x_hat), grad_bias = sum(dz), grad_slope = sum(grad_out * z * [z <= 0]).
    grad_slope is empty unless activation is prelu. Differentiable (used for double backward).
    """
    nd, acc = saved.dim(), acc_dtype(saved.dtype)
    dims = _reduce_dims(nd)
    gamma = _channel_view(weight.to(acc), nd) if weight is not None else None
    beta = _channel_view(bias.to(acc), nd) if bias is not None else None
    sl = _slope_view(activation, slope, negative_slope, nd, acc)
    s, gy = saved.to(acc), grad_out.to(acc)
    mean, invstd = _channel_view(save_mean.to(acc), nd), _channel_view(save_invstd.to(acc), nd)
    z, x_hat = _pre_activation("batch_norm_act_backward", s, saved_is_output, mean, invstd, gamma, beta, None,
                               activation, sl)
    dz = gy * activation_derivative(z, activation, sl)
    sum_dz, sum_dz_xhat = dz.sum(dims), (dz * x_hat).sum(dims)
    scale = invstd * gamma if gamma is not None else invstd
    if training:
        count = saved.numel() // saved.shape[1]
        grad_input = scale * (dz - _channel_view(sum_dz, nd) / count - x_hat * _channel_view(sum_dz_xhat, nd) / count)
    else:
        grad_input = scale * dz
    grad_slope = _slope_grad(activation, z, gy, slope, dims, sum_dz)
    grad_weight = sum_dz_xhat.to(weight.dtype) if weight is not None else sum_dz_xhat
    grad_bias = sum_dz.to(bias.dtype) if bias is not None else sum_dz
    return grad_input.to(saved.dtype), grad_weight, grad_bias, grad_slope


# ---------------------------------------------------------------- gan_loss

# The per-logit terms every GAN loss is made of (x: a raw logit, t: `target`):
#   bce          softplus(x) - t * x = t * softplus(-x) + (1 - t) * softplus(x)   (cross-entropy against label t)
#   neg_softplus -softplus(x) = log(1 - sigmoid(x))                                (minimax generator)
#   neg_half_exp -exp(min(x, 80)) / 2                                              (maximum-likelihood generator)
#   linear       t * x                                                             (Wasserstein; t = +-1)
#   hinge        relu(1 + t * x)                                                   (t = -1 real, +1 fake)
#   squared      (x - t)^2 / 2                                                     (least squares)
GAN_LOSS_TERMS = ("bce", "neg_softplus", "neg_half_exp", "linear", "hinge", "squared")
# exp(x) overflows float32 above ~88.7: the maximum-likelihood term clamps its exponent here, so its value and
# gradient stay finite for any logit (beyond it the term is constant).
ML_EXP_CLAMP = 80.0


def gan_loss_term(x: Tensor, term: str, target: float) -> Tensor:
    """The elementwise loss term of `term` (see GAN_LOSS_TERMS) at logits x, stable for any magnitude of x."""
    if term == "bce":
        return F.softplus(x) - target * x
    if term == "neg_softplus":
        return -F.softplus(x)
    if term == "neg_half_exp":
        return -0.5 * torch.exp(torch.clamp(x, max=ML_EXP_CLAMP))
    if term == "linear":
        return target * x
    if term == "hinge":
        return torch.relu(1 + target * x)
    if term == "squared":
        return 0.5 * (x - target) ** 2
    raise ValueError(f"gan_loss: term must be one of {GAN_LOSS_TERMS}, got {term!r}")


def gan_loss(logits: Tensor, term: str, target: float, mean: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Loss (mean or sum of the term over all logits, float32 or float64), its gradient w.r.t. the logits (logits'
    dtype), and scores = [mean sigmoid(logits), mean logits] (detached diagnostics), computed with autograd."""
    acc = acc_dtype(logits.dtype)
    x = logits.detach().to(acc).requires_grad_(True)
    with torch.enable_grad():
        values = gan_loss_term(x, term, target)
        loss = values.mean() if mean else values.sum()
        (grad,) = torch.autograd.grad(loss, x)
    scores = torch.stack([torch.sigmoid(x.detach()).mean(), x.detach().mean()])
    return loss.detach(), grad.to(logits.dtype), scores


def bias_act(input: Tensor, bias: Tensor | None, slope: Tensor | None, activation: str, negative_slope: float) -> Tensor:
    """act(input + bias[channel]) over (N, C, *) input: the epilogue of a convolution with BatchNorm folded in.

    bias (C values) and slope (prelu: 1 or C values) may be of another floating dtype than input (fp32 bias on
    fp16 activations under autocast): the sum is taken in the accumulation dtype, the output has input's dtype.
    """
    activations.get(activation, "bias_act")
    nd, acc = input.dim(), acc_dtype(input.dtype)
    z = input.to(acc)
    if bias is not None:
        z = z + _channel_view(bias.to(acc), nd)
    y = activation_forward(z, activation, _slope_view(activation, slope, negative_slope, nd, acc), negative_slope)
    return y.to(input.dtype)


def bias_act_backward(
    grad_out: Tensor, saved: Tensor, saved_is_output: bool, bias: Tensor | None, slope: Tensor | None,
    activation: str, negative_slope: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of bias_act w.r.t. (input, bias, slope).

    `saved` is the forward output when saved_is_output (activations.output_suffices: the sign of
    the output is that of the pre-activation z, which is all the derivative needs, or the derivative is a function
    of the output), else the input (a learned slope's gradient needs z itself). grad_bias has C values (bias's
    dtype; the accumulation dtype when bias is None); grad_slope has slope's size for a learned slope and is empty
    otherwise.
    """
    nd, acc = saved.dim(), acc_dtype(saved.dtype)
    dims = _reduce_dims(nd)
    s, gy = saved.to(acc), grad_out.to(acc)
    sl = _slope_view(activation, slope, negative_slope, nd, acc)
    if saved_is_output:
        if not activations.output_suffices(activation, negative_slope):
            raise ValueError(f"bias_act_backward: {activation} needs the input saved")
        z = s  # the output: act'(z) follows from it (no learned slope reads z here)
        gz = gy * activations.get(activation).output_derivative(s, sl)
    else:
        z = s + _channel_view(bias.to(acc), nd) if bias is not None else s
        gz = gy * activation_derivative(z, activation, sl)
    grad_bias = gz.sum(dims)
    grad_bias = grad_bias.to(bias.dtype) if bias is not None else grad_bias
    grad_slope = _slope_grad(activation, z, gy, slope, dims, grad_bias)
    return gz.to(saved.dtype), grad_bias, grad_slope


# ---------------------------------------------------------------- instance_norm_act


def _plane_view(v: Tensor, ndim: int) -> Tensor:
    """(N, C) statistics as (N, C, 1, ...) for broadcasting against (N, C, *)."""
    return v.reshape(list(v.shape) + [1] * (ndim - 2))


def instance_norm_act(
    input: Tensor, weight: Tensor | None, bias: Tensor | None, residual: Tensor | None, slope: Tensor | None,
    eps: float, activation: str, negative_slope: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """act(InstanceNorm(input) + residual), as torch.nn.InstanceNorm{1,2,3}d (input statistics: per sample and
    channel over the spatial dims, biased variance) followed by the residual add (when given) and the activation.

    Returns (out, save_mean, save_invstd): the (N, C) statistics in the accumulation dtype; out has input's dtype.
    Running statistics are the caller's (see pygan.ops.instance_norm_act).
    """
    activations.get(activation, "instance_norm_act")
    acc = acc_dtype(input.dtype)
    x = input.to(acc)
    dims = list(range(2, input.dim()))
    mean, var = x.mean(dims), x.var(dims, unbiased=False)
    invstd = torch.rsqrt(var + eps)
    out = instance_norm_act_apply(input, weight, bias, residual, mean, invstd, slope, activation, negative_slope)
    return out, mean, invstd


def instance_norm_act_apply(
    input: Tensor, weight: Tensor | None, bias: Tensor | None, residual: Tensor | None, save_mean: Tensor,
    save_invstd: Tensor, slope: Tensor | None, activation: str, negative_slope: float,
) -> Tensor:
    """act(weight * (input - save_mean) * save_invstd + bias + residual) with given (N, C) statistics."""
    nd, acc = input.dim(), acc_dtype(input.dtype)
    x_hat = (input.to(acc) - _plane_view(save_mean.to(acc), nd)) * _plane_view(save_invstd.to(acc), nd)
    return _affine_act(x_hat, weight, bias, residual, slope, activation, negative_slope, input.dtype)


def instance_norm_act_backward(
    grad_out: Tensor, saved: Tensor, saved_is_output: bool, residual: Tensor | None, weight: Tensor | None,
    bias: Tensor | None, slope: Tensor | None, save_mean: Tensor, save_invstd: Tensor, training: bool,
    activation: str, negative_slope: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of instance_norm_act's `out` w.r.t. (input, weight, bias, slope, residual), given grad_out.

    `saved` is the forward input, or its output when saved_is_output (invertible activations, no residual): then
    z = act^-1(out), x_hat = (z - bias) / weight. Otherwise x_hat = (input - mean) * invstd and z = weight * x_hat +
    bias (+ residual, when given: the forward's). With dz = grad_out * act'(z) and S values per plane:
      grad_input    = weight * invstd * (dz - mean_s(dz) - x_hat * mean_s(dz * x_hat))   (training)
                    = weight * invstd * dz                                               (given statistics)
      grad_weight = sum_{n,s}(dz * x_hat), grad_bias = sum_{n,s}(dz), grad_slope = sum(grad_out * z * [z <= 0]),
      grad_residual = dz (empty unless residual is given).
    Differentiable (used for double backward).
    """
    nd, acc = saved.dim(), acc_dtype(saved.dtype)
    spatial = list(range(2, nd))
    dims = [0] + spatial
    gamma = _channel_view(weight.to(acc), nd) if weight is not None else None
    beta = _channel_view(bias.to(acc), nd) if bias is not None else None
    sl = _slope_view(activation, slope, negative_slope, nd, acc)
    s, gy = saved.to(acc), grad_out.to(acc)
    mean, invstd = _plane_view(save_mean.to(acc), nd), _plane_view(save_invstd.to(acc), nd)
    if saved_is_output and residual is not None:
        raise ValueError("instance_norm_act_backward: saved_is_output cannot be combined with a residual")
    z, x_hat = _pre_activation("instance_norm_act_backward", s, saved_is_output, mean, invstd, gamma, beta,
                               residual, activation, sl)
    dz = gy * activation_derivative(z, activation, sl)
    scale = invstd * gamma if gamma is not None else invstd
    if training:
        grad_input = scale * (dz - dz.mean(spatial, keepdim=True) - x_hat * (dz * x_hat).mean(spatial, keepdim=True))
    else:
        grad_input = scale * dz
    sum_dz, sum_dz_xhat = dz.sum(dims), (dz * x_hat).sum(dims)
    grad_slope = _slope_grad(activation, z, gy, slope, dims, sum_dz)
    grad_weight = sum_dz_xhat.to(weight.dtype) if weight is not None else sum_dz_xhat
    grad_bias = sum_dz.to(bias.dtype) if bias is not None else sum_dz
    grad_residual = dz.to(saved.dtype) if residual is not None else saved.new_empty(0)
    return grad_input.to(saved.dtype), grad_weight, grad_bias, grad_slope, grad_residual
