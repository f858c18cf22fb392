"""Convolution + BatchNorm + activation blocks: ConvTranspose2dBNAct and Conv2dBNAct.

Children `conv` (exactly an nn.ConvTranspose2d / nn.Conv2d) and `bn` (pygan.nn.BatchNormAct2d, whose parameters and
buffers are exactly nn.BatchNorm2d's), so a state_dict moves between a block and the stock `conv` + `bn` pair
unchanged (PReLU adds the block's `bn.slope`).

Training: the convolution through ATen (cuDNN / oneDNN), then the fused batch-norm + activation op, which keeps
only its output for backward when the activation is invertible. Evaluation: BatchNorm folded into the convolution's
weight and bias — cached while no parameter or running statistic changes (keyed on their version counters, so an
optimizer step or load_state_dict invalidates it) — then the activation in place on the convolution's output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pygan.nn.batch_norm_act import BatchNormAct2d


def fold_scale_shift(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) with bn(x) == x * scale + shift in evaluation mode."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def fold_into_conv(conv: nn.Module, bn: nn.Module) -> tuple[Tensor, Tensor]:
    """(weight, bias) of a convolution equal to conv followed by bn in evaluation mode."""
    scale, shift = fold_scale_shift(bn)
    w = conv.weight
    if isinstance(conv, nn.ConvTranspose2d):
        # weight: (in_channels, out_channels / groups, kh, kw); output channel g * opg + j is row block g, column j.
        g = conv.groups
        w5 = w.reshape(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
        w = (w5 * scale.reshape(g, 1, -1, 1, 1)).reshape(w.shape)
    else:
        w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return w, bias


def _activate(y: Tensor, bn: BatchNormAct2d) -> Tensor:
    """bn's activation on the folded convolution's output; in place when no gradient is recorded."""
    inplace = not torch.is_grad_enabled()
    if bn.activation == "relu":
        return torch.relu_(y) if inplace else torch.relu(y)
    if bn.activation == "leaky_relu":
        return F.leaky_relu(y, bn.negative_slope, inplace=inplace)
    if bn.activation == "prelu":
        return F.prelu(y, bn.slope)
    return y


class _ConvBNAct(nn.Module):
    conv: nn.Module
    bn: BatchNormAct2d

    def _make_bn(self, out_channels, activation, negative_slope, eps, momentum, affine, track_running_stats, device,
                 dtype) -> BatchNormAct2d:
        return BatchNormAct2d(out_channels, eps, momentum, affine, track_running_stats, device, dtype,
                              activation=activation, negative_slope=negative_slope)

    def _state_key(self) -> tuple:
        tensors = [self.conv.weight, self.conv.bias, self.bn.weight, self.bn.bias, self.bn.running_mean,
                   self.bn.running_var, self.bn.slope]
        return tuple((t.data_ptr(), t._version, t.device, t.dtype) if t is not None else None for t in tensors) + (self.bn.eps,)

    def folded(self) -> tuple[Tensor, Tensor]:
        """The folded (weight, bias) of the evaluation path; cached when no gradient is being recorded."""
        if torch.is_grad_enabled():
            return fold_into_conv(self.conv, self.bn)  # differentiable, not cached
        key = self._state_key()
        cache = self.__dict__.get("_fold_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cache = (key, fold_into_conv(self.conv, self.bn))
            self.__dict__["_fold_cache"] = cache  # not a buffer: never in the state_dict
        return cache[1]

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if self.training or self.bn.running_mean is None:
            return self.bn(self._conv(x, self.conv.weight, self.conv.bias))
        weight, bias = self.folded()
        return _activate(self._conv(x, weight, bias), self.bn)


class ConvTranspose2dBNAct(_ConvBNAct):
    """nn.ConvTranspose2d -> BatchNorm2d -> activation ('identity' | 'relu' | 'leaky_relu' | 'prelu')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = False, dilation=1, activation: str = "relu", negative_slope: float = 0.01,
                 eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups,
                                       bias, dilation, device=device, dtype=dtype)
        self.bn = self._make_bn(out_channels, activation, negative_slope, eps, momentum, affine, track_running_stats,
                                device, dtype)

    def _conv(self, x, weight, bias):
        c = self.conv
        output_padding = c._output_padding(x, None, c.stride, c.padding, c.kernel_size, 2, c.dilation)
        return F.conv_transpose2d(x, weight, bias, c.stride, c.padding, output_padding, c.groups, c.dilation)


class Conv2dBNAct(_ConvBNAct):
    """nn.Conv2d -> BatchNorm2d -> activation ('identity' | 'relu' | 'leaky_relu' | 'prelu')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, padding_mode: str = "zeros", activation: str = "leaky_relu",
                 negative_slope: float = 0.2, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                              padding_mode, device=device, dtype=dtype)
        self.bn = self._make_bn(out_channels, activation, negative_slope, eps, momentum, affine, track_running_stats,
                                device, dtype)

    def _conv(self, x, weight, bias):
        return self.conv._conv_forward(x, weight, bias)
