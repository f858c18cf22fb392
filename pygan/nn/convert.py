"""Stock <-> fused conversion, in one place: which torch.nn activation module is which activation of the spec,
a fused BatchNorm made from a stock one (sharing its very tensors), the stock activation module a fused one
stands for, synchronized BatchNorm conversion, and `to_stock` for pygan's models.

Every conversion keeps state_dict keys and values, so checkpoints move both ways.
"""

from __future__ import annotations

from torch import nn

from pygan._compat import BatchNormBase
from pygan.ops import activations
from pygan.nn.batch_norm_act import BatchNormAct1d, BatchNormAct2d, BatchNormAct3d, _BatchNormAct, prelu_reading
from pygan.nn.instance_norm_act import InstanceNormAct1d, InstanceNormAct2d, InstanceNormAct3d, _InstanceNormAct

FUSED_FOR = {nn.BatchNorm1d: BatchNormAct1d, nn.BatchNorm2d: BatchNormAct2d, nn.BatchNorm3d: BatchNormAct3d}
FUSED_INSTANCE_FOR = {nn.InstanceNorm1d: InstanceNormAct1d, nn.InstanceNorm2d: InstanceNormAct2d,
                      nn.InstanceNorm3d: InstanceNormAct3d}


def activation_of(module) -> tuple[str, float] | None:
    """(activation, negative_slope) of a stock activation module (or a function called with the input alone)
    that a BatchNorm before it can fuse with, else None (the identity is nothing to fuse)."""
    for act in activations.ACTIVATIONS.values():
        if act.name != "identity" and (isinstance(module, act.module) or module in act.functions):
            return act.name, float(getattr(module, "negative_slope", 0.0))
    return None


def activation_module(activation: str, negative_slope: float = 0.01, slope: nn.Parameter | None = None) -> nn.Module:
    """The stock module applying `activation` (a learned slope's module holds `slope` when given)."""
    act = activations.get(activation)
    if act.slope == "fixed":
        return act.module(negative_slope)
    module = act.module()
    if act.learned_slope and slope is not None:
        module.weight = slope
    return module


def fused_batch_norm(bn: BatchNormBase, activation: str = "identity", negative_slope: float = 0.01,
                     slope_owner: nn.Module | None = None, sync: bool = False, process_group=None) -> _BatchNormAct:
    """A BatchNormAct applying `activation` that shares `bn`'s parameter and buffer tensors (it reads and updates
    the very same ones); a PReLU's slope is read from `slope_owner` (which keeps its key)."""
    cls = FUSED_FOR[type(bn)]
    args = (bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, "meta")
    kwargs = dict(sync=sync, process_group=process_group)
    if activations.get(activation).learned_slope:
        fused = prelu_reading(slope_owner, cls, *args, **kwargs)
    else:
        fused = cls(*args, activation=activation, negative_slope=negative_slope, **kwargs)
    for name in ("weight", "bias"):
        setattr(fused, name, getattr(bn, name))
    fused._buffers.update(bn._buffers)  # running_mean, running_var, num_batches_tracked
    return fused.train(bn.training)


def fused_instance_norm(norm: nn.Module, activation: str = "identity", negative_slope: float = 0.01) -> _InstanceNormAct:
    """An InstanceNormAct applying `activation` that shares `norm`'s parameter and buffer tensors (a learned slope is
    not taken over: pygan.fuse leaves InstanceNorm + PReLU alone)."""
    if activations.get(activation).learned_slope:
        raise ValueError(f"fused_instance_norm: a learned slope ({activation}) is not taken over from a separate "
                         "module")
    cls = FUSED_INSTANCE_FOR[type(norm)]
    fused = cls(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats, "meta",
                activation=activation, negative_slope=negative_slope)
    for name in ("weight", "bias"):
        setattr(fused, name, getattr(norm, name))
    fused._buffers.update(norm._buffers)
    return fused.train(norm.training)


def convert_sync_batch_norm_act(module: nn.Module, process_group=None, sync: bool = True) -> nn.Module:
    """Synchronizes the batch statistics of every BatchNorm inside `module` (itself included) over
    `process_group` (default: the world) from now on; returns `module` (or, if `module` is itself a stock
    BatchNorm, its replacement). pygan's BatchNormAct modules are switched to sync; stock nn.BatchNorm{1,2,3}d
    are replaced by BatchNormAct{1,2,3}d with the identity activation holding the very same parameter and buffer
    tensors (state_dict keys unchanged, optimizers keep working) - unlike nn.SyncBatchNorm, that also runs on
    CPUs (gloo). sync=False switches the pygan modules back (replacements stay: they compute the same). The
    counterpart of nn.SyncBatchNorm.convert_sync_batchnorm, which leaves pygan's modules alone."""
    if type(module) in FUSED_FOR:
        return fused_batch_norm(module, sync=sync, process_group=process_group)
    for m in list(module.modules()):
        if isinstance(m, _BatchNormAct):
            m.sync, m.process_group = bool(sync), process_group
        for name, child in list(m.named_children()):
            if type(child) in FUSED_FOR and sync:
                setattr(m, name, fused_batch_norm(child, sync=sync, process_group=process_group))
    return module


class FusableModel(nn.Module):
    """Base of pygan's models: built from pygan's fused blocks, or with `fused=False` from stock torch.nn layers
    with the same state_dict. `config` holds the constructor's arguments."""

    config: dict

    @staticmethod
    def check_positive(**values) -> None:
        """ValueError naming the first argument that is not a positive int."""
        for name, value in values.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @staticmethod
    def check_choice(name: str, value, choices) -> None:
        """ValueError naming the argument when `value` is not one of `choices`."""
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")

    def to_stock(self) -> nn.Module:
        """The same network built from stock torch.nn modules only, with this model's state_dict (and mode)."""
        twin = type(self)(**{**self.config, "fused": False})
        twin.load_state_dict(self.state_dict())
        p = next(self.parameters())
        return twin.to(device=p.device, dtype=p.dtype).train(self.training)
