"""Conv2d (with bias) + activation, no normalisation: the block of a discriminator's first layer or any conv
without a norm after it. Fused, the bias and the activation are one bias_act pass after the bias-free
convolution (one read and write of the output instead of two); the state_dict is nn.Conv2d's either way."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pygan.nn.convert import activation_module
from pygan.ops import activations, bias_act


class Conv2dAct(nn.Conv2d):
    """An nn.Conv2d followed by `activation` (one of the activation table's with no learned slope)."""

    def _set_activation(self, activation: str, negative_slope: float, fused: bool) -> None:
        act = activations.get(activation, "conv_act")
        if act.slope == "learned":
            raise ValueError(f"conv_act: activation {activation!r} has a learned slope, which a Conv2d has no "
                             f"parameter for; use its stock module after the conv")
        if self.bias is None or self.padding_mode != "zeros":
            raise ValueError("conv_act: the conv must have a bias and padding_mode 'zeros'")
        self.activation, self.negative_slope, self.fused = activation, negative_slope, fused
        self.act = None if fused else activation_module(activation, negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            y = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
            return bias_act(y, self.bias, self.activation, self.negative_slope)
        return self.act(super().forward(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}, negative_slope={self.negative_slope}"


def conv_act(conv: nn.Conv2d, activation: str, negative_slope: float = 0.01, fused: bool = True) -> Conv2dAct:
    """`conv` (an nn.Conv2d with a bias; its parameters are kept, not copied) followed by `activation`: fused
    (bias_act), or with fused=False the stock conv then the stock activation."""
    if type(conv) is not nn.Conv2d:
        raise TypeError(f"conv_act: conv must be an nn.Conv2d, got {type(conv).__name__}")
    conv.__class__ = Conv2dAct
    conv._set_activation(activation, negative_slope, fused)
    return conv
