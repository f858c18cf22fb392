"""InstanceNorm2d + activation, fused or as the stock pair: how pygan's models build an instance norm block."""

from __future__ import annotations

from torch import nn

from pygan.nn.convert import activation_module
from pygan.nn.instance_norm_act import InstanceNormAct2d


def instance_norm_act_block(channels: int, activation: str, negative_slope: float = 0.01,
                            fused: bool = True) -> nn.Module:
    """InstanceNorm2d (affine=False) followed by `activation`: one InstanceNormAct2d, or with fused=False the stock
    nn.InstanceNorm2d (and the activation's module, in an nn.Sequential); neither has parameters or buffers, so
    state_dicts around them match."""
    if fused:
        return InstanceNormAct2d(channels, activation=activation, negative_slope=negative_slope)
    if activation == "identity":
        return nn.InstanceNorm2d(channels)
    return nn.Sequential(nn.InstanceNorm2d(channels), activation_module(activation, negative_slope))
