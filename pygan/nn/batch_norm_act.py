"""BatchNormAct{1,2,3}d: torch.nn.BatchNorm{1,2,3}d followed by an activation, in one fused op.

Same constructor arguments (`bias=False` included), parameters, buffers and state_dict keys as the stock BatchNorm
modules (a state_dict moves between the two unchanged), plus `activation` and `negative_slope`. With an
activation whose slope is learned (prelu) the module also owns the slope, a parameter named `slope` (1 or
num_features values, initialised like the activation's stock module). Where the two differ on purpose: docs/ops.md, "Differences from torch.nn.BatchNorm".

sync=True (or convert_sync_batch_norm_act(model)) makes training-mode statistics those of the whole batch over
all ranks of `process_group` (pygan.ops.sync_batch_norm_act), like torch.nn.SyncBatchNorm; outside an
initialized torch.distributed run, or with one rank, it is the plain module.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pygan._compat import NormBase
from pygan.ops import activations, batch_norm_act
from pygan.ops.sync_batch_norm_act import sync_batch_norm_act


class _BatchNormAct(NormBase):
    # Deliberately not a subclass of nn.BatchNorm2d / BatchNormBase: tools that rewrite those (for example
    # nn.SyncBatchNorm.convert_sync_batchnorm) would silently drop the activation.
    _expected_dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
        activation: str = "identity",
        negative_slope: float = 0.01,
        prelu_parameters: int = 1,
        prelu_init: float = 0.25,
        sync: bool = False,
        process_group=None,
    ) -> None:
        act = activations.get(activation, type(self).__name__)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        if affine and not bias:  # as torch.nn.BatchNorm*d(bias=False): a weight, no bias (set here, for any torch)
            self.register_parameter("bias", None)
        self.activation = activation
        self.negative_slope = float(negative_slope)
        self.sync = bool(sync)
        self.process_group = process_group
        if act.learned_slope:
            if prelu_parameters not in (1, num_features):
                raise ValueError(f"prelu_parameters must be 1 or num_features ({num_features}), got {prelu_parameters}")
            self.slope = nn.Parameter(torch.full((prelu_parameters,), float(prelu_init), device=device, dtype=dtype))
        else:
            self.register_parameter("slope", None)

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in self._expected_dims:  # stock's words: "expected 4D input (got 2D input)"
            expected = " or ".join(f"{d}D" for d in self._expected_dims)
            raise ValueError(f"expected {expected} input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        # Running-stat bookkeeping exactly as torch.nn.modules.batchnorm._BatchNorm.forward.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        if use_batch_stats and self._synchronized():
            return sync_batch_norm_act(
                input, self.running_mean if track else None, self.running_var if track else None, self.weight,
                self.bias, factor, self.eps, self.activation, self.negative_slope, self.slope, self.process_group)
        return batch_norm_act(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
            activation=self.activation,
            negative_slope=self.negative_slope,
            slope=self.slope,
        )

    def _synchronized(self) -> bool:
        return (getattr(self, "sync", False) and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(getattr(self, "process_group", None)) > 1)

    def extra_repr(self) -> str:
        fixed = activations.get(self.activation).slope == "fixed"
        act = self.activation + (f"({self.negative_slope})" if fixed else "")
        stock = super().extra_repr()
        if "bias=" not in stock:  # torch 2.11's lists no bias (it has no bias=False): as newer releases write it
            stock = stock.replace(f"affine={self.affine}", f"affine={self.affine}, bias={self.bias is not None}", 1)
        return stock + f", activation={act}" + (", sync=True" if self.sync else "")


class BatchNormAct1d(_BatchNormAct):
    """BatchNorm1d + activation over (N, C) or (N, C, L) input."""

    _expected_dims = (2, 3)


class BatchNormAct2d(_BatchNormAct):
    """BatchNorm2d + activation over (N, C, H, W) input."""

    _expected_dims = (4,)


class BatchNormAct3d(_BatchNormAct):
    """BatchNorm3d + activation over (N, C, D, H, W) input."""

    _expected_dims = (5,)


class SlopeOwner(nn.Identity):
    """Owns a PReLU slope under the stock key (`weight`) for a fused BatchNorm + PReLU that reads it, so that the
    pair's state_dict is exactly that of a stock BatchNorm followed by nn.PReLU."""

    def __init__(self, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight


class _SlopeFromOwner:
    """A fused BatchNorm + PReLU whose slope is the parameter of another module (a PReLU or a SlopeOwner), read at
    every use so that .to(), load_state_dict(assign=True) and deepcopy keep them one parameter."""

    @property
    def slope(self):
        return self._slope_owner.weight


class PReLUBatchNormAct1d(_SlopeFromOwner, BatchNormAct1d):
    pass


class PReLUBatchNormAct2d(_SlopeFromOwner, BatchNormAct2d):
    pass


class PReLUBatchNormAct3d(_SlopeFromOwner, BatchNormAct3d):
    pass


def prelu_reading(owner: nn.Module, cls: type, *args, **kwargs) -> _BatchNormAct:
    """A BatchNormAct of `cls`'s dimensionality (constructor arguments as BatchNormAct) applying PReLU with
    `owner.weight` as its slope; `owner` is not registered as a submodule (its parent keeps it and its key)."""
    reader = {BatchNormAct1d: PReLUBatchNormAct1d, BatchNormAct2d: PReLUBatchNormAct2d,
              BatchNormAct3d: PReLUBatchNormAct3d}[cls]
    bn = reader(*args, **{**kwargs, "activation": "leaky_relu"})  # built without a slope parameter of its own
    del bn._parameters["slope"]
    bn.activation = "prelu"
    object.__setattr__(bn, "_slope_owner", owner)  # a plain reference: not a submodule, no new key
    return bn
