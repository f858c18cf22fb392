"""Convolution + BatchNorm + activation blocks: ConvTranspose2dBNAct and Conv2dBNAct.

Children `conv` (exactly an nn.ConvTranspose2d / nn.Conv2d) and `bn` (pygan.nn.BatchNormAct2d, whose parameters and
buffers are exactly nn.BatchNorm2d's), so a state_dict moves between a block and its stock twin StockConvBNAct
(`conv`, `bn`, `act`) unchanged: with PReLU the block's child `act` owns the slope under nn.PReLU's key.

Training: the convolution through ATen (cuDNN / oneDNN), then the fused batch-norm + activation op, which keeps
only its output for backward when the activation is invertible. Evaluation: BatchNorm folded into the convolution's
weight and bias — cached while no parameter or running statistic changes (see `folded`: an optimizer step,
load_state_dict or .to() invalidates it) — then the fused per-channel bias + activation op (pygan.ops.bias_act) on
the convolution's output: one read and one write, like the stock convolution's bias add + in-place activation.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pygan._compat import conv_forward, conv_transpose_output_padding
from pygan.nn.batch_norm_act import BatchNormAct2d, SlopeOwner, prelu_reading
from pygan.nn.convert import activation_module
from pygan.ops import activations
from pygan.ops.bias_act import bias_act
from pygan.ops.fake_checks import check_batch_norm_args


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
    if w.stride() != conv.weight.stride():
        # The reshapes above may leave a size-1 dim with a stride no allocation gives (a channels_last (1, C, k, k)
        # weight comes back with stride C on dim 0); conv backward then refuses it ("grad_weight needs to be
        # contiguous"). Give the folded weight the convolution's own strides.
        w = torch.empty_like(conv.weight, dtype=w.dtype).copy_(w)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return w, bias


def _cache_matches(cache, tensors: list[Tensor | None], eps: float) -> bool:
    refs, cached_eps, _ = cache
    if cached_eps != eps:
        return False
    for ref, t in zip(refs, tensors):
        if (ref is None) != (t is None) or (t is not None and (ref[0]() is not t or ref[1] != t._version)):
            return False
    return True


class _ConvBNAct(nn.Module):
    conv: nn.Module
    bn: BatchNormAct2d

    def _add_bn(self, out_channels, activation, negative_slope, eps=1e-5, momentum=0.1, affine=True,
                track_running_stats=True, device=None, dtype=None) -> None:
        args = (out_channels, eps, momentum, affine, track_running_stats, device, dtype)
        if activations.get(activation, type(self).__name__).learned_slope:
            init = activations.get(activation).default_slope
            owner = SlopeOwner(nn.Parameter(torch.full((1,), init, device=device, dtype=dtype)))
            self.bn = prelu_reading(owner, BatchNormAct2d, *args)
            self.act = owner  # registered after bn: parameters in the stock pair's order
        else:
            self.bn = BatchNormAct2d(*args, activation=activation, negative_slope=negative_slope)

    def _fold_inputs(self) -> list[Tensor | None]:
        return [self.conv.weight, self.conv.bias, self.bn.weight, self.bn.bias, self.bn.running_mean,
                self.bn.running_var]

    def folded(self) -> tuple[Tensor, Tensor]:
        """The folded (weight, bias) of the evaluation path; cached when no gradient is being recorded.

        The cache is valid while every input is the very same tensor (held by weak reference: a tensor replaced by
        load_state_dict(assign=True), .to() or re-assignment never matches, even at a reused address) at the
        same version (in-place updates: optimizer steps, copying loads, running statistics) and eps is unchanged.
        """
        if torch.is_grad_enabled():
            return fold_into_conv(self.conv, self.bn)  # differentiable, not cached
        tensors = self._fold_inputs()
        cache = self.__dict__.get("_fold_cache")
        if cache is None or not _cache_matches(cache, tensors, self.bn.eps):
            with torch.no_grad():
                folded = fold_into_conv(self.conv, self.bn)
            refs = [None if t is None else (weakref.ref(t), t._version) for t in tensors]
            cache = (refs, self.bn.eps, folded)
            self.__dict__["_fold_cache"] = cache  # not a buffer: never in the state_dict
        return cache[2]

    def __getstate__(self):  # copies and pickles start without a cache (weak references cannot be pickled)
        state = self.__dict__.copy()
        state.pop("_fold_cache", None)
        return state

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if self.training or self.bn.running_mean is None:
            return self.bn(self._conv(x, self.conv.weight, self.conv.bias))
        check_batch_norm_args(x.shape, False, self.bn.eps, as_stock=True)  # eps, as stock BatchNorm2d in eval
        weight, bias = self.folded()
        bn = self.bn
        return bias_act(self._conv(x, weight, None), bias, bn.activation, bn.negative_slope, bn.slope)


class ConvTranspose2dBNAct(_ConvBNAct):
    """nn.ConvTranspose2d -> BatchNorm2d -> activation (a name of the table, pygan/ops/activations.py)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = False, dilation=1, activation: str = "relu", negative_slope: float = 0.01,
                 eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups,
                                       bias, dilation, device=device, dtype=dtype)
        self._add_bn(out_channels, activation, negative_slope, eps, momentum, affine, track_running_stats, device,
                     dtype)

    def _conv(self, x, weight, bias):
        c = self.conv
        output_padding = conv_transpose_output_padding(c, x)
        return F.conv_transpose2d(x, weight, bias, c.stride, c.padding, output_padding, c.groups, c.dilation)


class Conv2dBNAct(_ConvBNAct):
    """nn.Conv2d -> BatchNorm2d -> activation (a name of the table, pygan/ops/activations.py)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, padding_mode: str = "zeros", activation: str = "leaky_relu",
                 negative_slope: float = 0.2, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                              padding_mode, device=device, dtype=dtype)
        self._add_bn(out_channels, activation, negative_slope, eps, momentum, affine, track_running_stats, device,
                     dtype)

    def _conv(self, x, weight, bias):
        return conv_forward(self.conv, x, weight, bias)


class StockConvBNAct(nn.Module):
    """The stock twin of Conv2dBNAct / ConvTranspose2dBNAct: children `conv`, `bn` (nn.BatchNorm2d), `act`."""

    def __init__(self, conv: nn.Module, activation: str, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(conv.out_channels, device=conv.weight.device, dtype=conv.weight.dtype)
        self.act = activation_module(activation, negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def conv_bn_act(conv: nn.Conv2d | nn.ConvTranspose2d, activation: str, negative_slope: float = 0.01,
                fused: bool = True) -> nn.Module:
    """conv -> BatchNorm2d -> activation around the given convolution: the fused block (Conv2dBNAct or
    ConvTranspose2dBNAct), or with fused=False its stock twin; the two have the same state_dict. How pygan's models
    build their conv blocks."""
    if not fused:
        return StockConvBNAct(conv, activation, negative_slope)
    if type(conv) not in (nn.Conv2d, nn.ConvTranspose2d):
        raise TypeError(f"conv_bn_act: conv must be an nn.Conv2d or nn.ConvTranspose2d, got {type(conv).__name__}")
    cls = ConvTranspose2dBNAct if isinstance(conv, nn.ConvTranspose2d) else Conv2dBNAct
    block = cls.__new__(cls)
    nn.Module.__init__(block)
    block.conv = conv
    block._add_bn(conv.out_channels, activation, negative_slope, device=conv.weight.device, dtype=conv.weight.dtype)
    return block
