"""InstanceNormAct{1,2,3}d: torch.nn.InstanceNorm{1,2,3}d followed by an activation (and optionally a residual add
before it), in one fused op.

Same constructor arguments, parameters, buffers, state_dict keys, input checks (unbatched input included) and
running-statistics behaviour as the stock InstanceNorm modules — forward, the checks and state_dict loading are
stock's own (torch.nn.modules.instancenorm._InstanceNorm); only the computation differs — plus `activation` and
`negative_slope`; with a learned-slope activation (prelu) the module owns the slope, a parameter named `slope`.
`module(x, residual)` adds `residual` (x's shape) before the activation: the second half of a ResNet block.
Deliberately not a subclass of nn.InstanceNorm2d: tools that rewrite those would drop the activation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pygan._compat import InstanceNormBase
from pygan.ops import activations, instance_norm_act


class _InstanceNormAct(InstanceNormBase):
    _stock: type = nn.InstanceNorm2d

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
        *,
        activation: str = "identity",
        negative_slope: float = 0.01,
        prelu_parameters: int = 1,
        prelu_init: float = 0.25,
    ) -> None:
        act = activations.get(activation, type(self).__name__)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.activation = activation
        self.negative_slope = float(negative_slope)
        if act.learned_slope:
            if prelu_parameters not in (1, num_features):
                raise ValueError(f"prelu_parameters must be 1 or num_features ({num_features}), got {prelu_parameters}")
            self.slope = nn.Parameter(torch.full((prelu_parameters,), float(prelu_init), device=device, dtype=dtype))
        else:
            self.register_parameter("slope", None)

    def _check_input_dim(self, input: Tensor) -> None:
        self._stock._check_input_dim(self, input)

    def _get_no_batch_dim(self) -> int:
        return self._stock._get_no_batch_dim(self)

    def forward(self, input: Tensor, residual: Tensor | None = None) -> Tensor:
        self._residual = residual
        try:
            return super().forward(input)  # stock's checks; then _apply_instance_norm or _handle_no_batch_input
        finally:
            self._residual = None

    def _handle_no_batch_input(self, input: Tensor) -> Tensor:
        if self._residual is not None:
            self._residual = self._residual.unsqueeze(0)
        return self._apply_instance_norm(input.unsqueeze(0)).squeeze(0)

    def _apply_instance_norm(self, input: Tensor) -> Tensor:
        return instance_norm_act(
            input, self.running_mean, self.running_var, self.weight, self.bias,
            self.training or not self.track_running_stats, self.momentum if self.momentum is not None else 0.0,
            self.eps, activation=self.activation, negative_slope=self.negative_slope, slope=self.slope,
            residual=self._residual)

    def extra_repr(self) -> str:
        fixed = activations.get(self.activation).slope == "fixed"
        return super().extra_repr() + f", activation={self.activation}" + (f"({self.negative_slope})" if fixed else "")


class InstanceNormAct1d(_InstanceNormAct):
    """InstanceNorm1d + activation over (N, C, L) or unbatched (C, L) input."""

    _stock = nn.InstanceNorm1d


class InstanceNormAct2d(_InstanceNormAct):
    """InstanceNorm2d + activation over (N, C, H, W) or unbatched (C, H, W) input."""

    _stock = nn.InstanceNorm2d


class InstanceNormAct3d(_InstanceNormAct):
    """InstanceNorm3d + activation over (N, C, D, H, W) or unbatched (C, D, H, W) input."""

    _stock = nn.InstanceNorm3d
